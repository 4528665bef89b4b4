//! Cache-aside for hot reads (DESIGN §6, §7): Redis shared by all replicas, with a
//! bounded in-process tier for embedded mode and for Redis outages.
//!
//! A Redis outage never surfaces as an error. Every Redis call is bounded by the
//! connection and response timeouts, and a failure opens a breaker ("down until")
//! that skips Redis entirely for a moment, so during an outage a call costs at most
//! one timeout per breaker window instead of one per call; reads fall through to the
//! loader (the database). Invalidations that cannot reach Redis are remembered and
//! replayed by a background task once it answers, so a stale entry cannot outlive
//! the outage.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

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
    /// Bounds each command, so a hung Redis costs milliseconds.
    pub response_timeout: Duration,
    /// Most entries the in-process tier holds (0 disables it).
    pub local_capacity: usize,
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
        }
    }
}

/// Counters since start, so tests and metrics can tell hits from loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered by a cache tier.
    pub hits: u64,
    /// Reads no tier could answer.
    pub misses: u64,
    /// Loader runs (one per single-flight group).
    pub loads: u64,
    /// Failed or timed-out Redis calls (each one opened the breaker).
    pub redis_errors: u64,
}

/// Local-tier TTL while Redis is configured but failing. Other replicas keep
/// writing meanwhile, so a local entry may only cushion a burst, never linger.
const OUTAGE_LOCAL_TTL: Duration = Duration::from_secs(1);
/// How long the breaker skips Redis after a failure.
const BREAKER_OPEN: Duration = Duration::from_millis(500);
/// Longest TTL honoured: longer ones overflow Redis expiry arithmetic and
/// `Instant`, and a cache entry living a year is a bug anyway.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Keys per DEL when replaying invalidations.
const REPLAY_CHUNK: usize = 500;
/// Pause between replay attempts when the breaker gives no better hint.
const REPLAY_MIN_PAUSE: Duration = Duration::from_millis(50);

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
/// still full, the entry closest to expiry is evicted (with equal TTLs that is
/// the oldest). Both are O(log n) thanks to the expiry index.
struct LocalTier {
    capacity: usize,
    entries: HashMap<String, LocalEntry>,
    by_expiry: BTreeMap<(Instant, u64), String>,
    seq: u64,
}

impl LocalTier {
    fn new(capacity: usize) -> Self {
        LocalTier {
            capacity,
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
        if self.capacity == 0 {
            return;
        }
        self.remove(key);
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let victim = entry.remove();
            self.entries.remove(&victim);
        }
        while self.entries.len() >= self.capacity {
            match self.by_expiry.pop_first() {
                Some((_, victim)) => {
                    self.entries.remove(&victim);
                }
                None => break,
            }
        }
        self.seq += 1;
        let expires = now.checked_add(ttl).unwrap_or(now);
        self.by_expiry.insert((expires, self.seq), key.to_string());
        self.entries.insert(
            key.to_string(),
            LocalEntry {
                value,
                expires,
                seq: self.seq,
            },
        );
    }

    fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.by_expiry.remove(&(e.expires, e.seq));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
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
    /// Breaker: Redis is skipped until this instant.
    down_until: Mutex<Option<Instant>>,
    /// Whether the last Redis call failed, to log transitions rather than every call.
    down: AtomicBool,
    local: Mutex<LocalTier>,
    /// Full keys whose DEL has not reached Redis yet, with the generation of the
    /// latest invalidation (a replay only clears the generation it sent).
    pending: Mutex<HashMap<String, u64>>,
    pending_gen: AtomicU64,
    replaying: AtomicBool,
    flights: Mutex<HashMap<String, Flight>>,
    next_flight: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    redis_errors: AtomicU64,
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
            .field("stats", &self.stats())
            .finish()
    }
}

impl Cache {
    /// Never fails: with Redis unreachable (or misconfigured) it logs a warning
    /// and serves from the in-process tier and the loader; the connection is
    /// retried on later calls, at most once per breaker window.
    pub async fn connect(cfg: CacheConfig) -> Cache {
        let redis = match cfg.redis_url.as_deref() {
            None => None,
            // The connection manager spawns its reconnect tasks on Tokio.
            Some(_) if tokio::runtime::Handle::try_current().is_err() => {
                tracing::warn!("no Tokio runtime; caching in process only");
                None
            }
            Some(url) => {
                let manager = redis::Client::open(url).and_then(|client| {
                    ConnectionManager::new_lazy_with_config(client, manager_config(&cfg))
                });
                match manager {
                    Ok(m) => Some(m),
                    Err(e) => {
                        // The URL may carry a password: log the error only.
                        tracing::warn!(error = %e, "invalid Redis configuration; caching in process only");
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
                local: Mutex::new(LocalTier::new(cfg.local_capacity)),
                cfg,
                redis,
                down_until: Mutex::new(None),
                down: AtomicBool::new(false),
                pending: Mutex::new(HashMap::new()),
                pending_gen: AtomicU64::new(0),
                replaying: AtomicBool::new(false),
                flights: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                loads: AtomicU64::new(0),
                redis_errors: AtomicU64::new(0),
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

    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        CacheStats {
            hits: i.hits.load(Ordering::Relaxed),
            misses: i.misses.load(Ordering::Relaxed),
            loads: i.loads.load(Ordering::Relaxed),
            redis_errors: i.redis_errors.load(Ordering::Relaxed),
        }
    }

    /// Exports this cache's hits and misses as `retention.cache.requests`
    /// labelled `cache = name`, read at each collection (a stopped cache
    /// reports nothing more).
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
    }

    /// Reads Redis when configured and answering, else the in-process tier.
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
        self.inner.store(key, Arc::from(value), ttl).await;
    }

    /// Call after the database commit. Removes the entry from both tiers and
    /// keeps an in-flight load from caching what it read before the commit. If
    /// Redis cannot be reached, the delete is replayed once it answers.
    pub async fn invalidate(&self, key: &str) {
        if let Some(flight) = lock(&self.inner.flights).remove(key) {
            flight.stale.store(true, Ordering::Release);
        }
        self.inner.remove(key).await;
    }

    /// Cache-aside with single-flight: concurrent misses on one key in this
    /// process run `load` once and share its result (hence the `String` error,
    /// which every waiter can get a copy of). `None` results are not cached.
    /// Redis errors never surface: they fall back to the local tier and loader.
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
                    inner.store(&key, v.clone(), ttl).await;
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

impl Inner {
    fn full_key(&self, key: &str) -> String {
        format!("{}:{key}", self.cfg.namespace)
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

    // Tier choice: with Redis configured and answering, reads go to Redis only
    // and never to the local tier, because another replica may have invalidated
    // the key in Redis; a local copy would serve stale data for its whole TTL.
    // The local tier is read only in embedded mode or when Redis fails, and in
    // the latter case it holds entries for at most OUTAGE_LOCAL_TTL.
    async fn lookup(&self, key: &str) -> Option<Bytes> {
        if self.redis.is_some() {
            let full = self.full_key(key);
            // A key whose invalidation has not reached Redis yet may hold a
            // stale value there: do not read it.
            if !self.is_pending(&full) {
                let found = self
                    .redis(|mut c| async move { c.get::<_, Option<Vec<u8>>>(full).await })
                    .await;
                if let Some(v) = found {
                    return v.map(Bytes::from);
                }
            }
        }
        lock(&self.local).get(key, Instant::now())
    }

    async fn store(&self, key: &str, value: Bytes, ttl: Option<Duration>) {
        let ttl = self.ttl(ttl);
        if self.redis.is_some() {
            let full = self.full_key(key);
            let generation = lock(&self.pending).get(&full).copied();
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let key_for_set = full.clone();
            let bytes = value.clone();
            let stored = self
                .redis(
                    |mut c| async move { c.pset_ex::<_, _, ()>(key_for_set, &bytes[..], ms).await },
                )
                .await;
            if stored.is_some() {
                // The new value supersedes a pending delete queued before it.
                if let Some(g) = generation {
                    let mut pending = lock(&self.pending);
                    if pending.get(&full) == Some(&g) {
                        pending.remove(&full);
                    }
                }
                return;
            }
        }
        let local_ttl = if self.redis.is_some() {
            ttl.min(OUTAGE_LOCAL_TTL)
        } else {
            ttl
        };
        lock(&self.local).insert(key, value, local_ttl, Instant::now());
    }

    /// Removes `key` from both tiers. The delete is queued before it is sent, so
    /// neither a failure nor a cancelled caller can lose it.
    async fn remove(self: &Arc<Self>, key: &str) {
        lock(&self.local).remove(key);
        if self.redis.is_none() {
            return;
        }
        let full = self.full_key(key);
        let generation = self.pending_gen.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(full.clone(), generation);
        let mut replay = ReplayOnDrop(Some(self));
        let key_for_del = full.clone();
        let deleted = self
            .redis(|mut c| async move { c.del::<_, ()>(key_for_del).await })
            .await;
        if deleted.is_some() {
            let mut pending = lock(&self.pending);
            if pending.get(&full) == Some(&generation) {
                pending.remove(&full);
            }
            replay.0 = None;
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
            let keys: Vec<String> = chunk.iter().map(|(k, _)| k.clone()).collect();
            let deleted = self
                .redis(|mut c| async move { c.del::<_, ()>(keys).await })
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
