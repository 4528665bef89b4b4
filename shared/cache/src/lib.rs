//! Cache-aside for hot reads (DESIGN §6, §7): Redis shared by all replicas, with a
//! bounded in-process tier for embedded mode and for Redis outages. A Redis outage
//! never surfaces as an error: a breaker skips Redis for a moment after a failure,
//! so each call costs at most one short timeout, and reads fall through to the
//! loader (the database).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// None: in-process only (embedded mode).
    pub redis_url: Option<String>,
    /// Key prefix, e.g. "retention" or a per-test namespace.
    pub namespace: String,
    pub default_ttl: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Most entries the in-process tier holds.
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub loads: u64,
    pub redis_errors: u64,
}

/// While Redis is configured but failing, the local tier only cushions bursts:
/// other replicas may write meanwhile, so its entries must expire quickly.
const OUTAGE_LOCAL_TTL: Duration = Duration::from_secs(1);
/// How long the breaker skips Redis after a failure.
const BREAKER_OPEN: Duration = Duration::from_millis(500);

type Loaded = Result<Option<Arc<Vec<u8>>>, String>;
/// Value and expiry of an in-process entry.
type LocalEntry = (Arc<Vec<u8>>, Instant);

struct Inner {
    cfg: CacheConfig,
    client: Option<redis::Client>,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    down_until: Mutex<Option<Instant>>,
    local: Mutex<HashMap<String, LocalEntry>>,
    pending_deletes: Mutex<HashSet<String>>,
    inflight: Mutex<HashMap<String, Shared<BoxFuture<'static, Loaded>>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    redis_errors: AtomicU64,
}

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cache {
    /// Never fails: an unreachable Redis is retried lazily on later calls.
    pub async fn connect(cfg: CacheConfig) -> Cache {
        let client = match cfg.redis_url.as_deref().map(redis::Client::open) {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "invalid Redis URL; caching in process only");
                None
            }
            None => None,
        };
        let cache = Cache::build(cfg, client);
        if cache.inner.client.is_some() && cache.connection().await.is_none() {
            tracing::warn!("Redis unreachable at start; serving without it until it answers");
        }
        cache
    }

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

    fn build(cfg: CacheConfig, client: Option<redis::Client>) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                cfg,
                client,
                conn: tokio::sync::Mutex::new(None),
                down_until: Mutex::new(None),
                local: Mutex::new(HashMap::new()),
                pending_deletes: Mutex::new(HashSet::new()),
                inflight: Mutex::new(HashMap::new()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                loads: AtomicU64::new(0),
                redis_errors: AtomicU64::new(0),
            }),
        }
    }

    /// The actual Redis key for `key`.
    pub fn full_key(&self, key: &str) -> String {
        format!("{}:{key}", self.inner.cfg.namespace)
    }

    pub fn redis_available(&self) -> bool {
        self.inner.client.is_some() && !self.breaker_open()
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

    fn breaker_open(&self) -> bool {
        lock(&self.inner.down_until).is_some_and(|t| Instant::now() < t)
    }

    fn trip(&self, err: &dyn std::fmt::Display) {
        self.inner.redis_errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.inner.down_until) = Some(Instant::now() + BREAKER_OPEN);
        tracing::warn!(error = %err, "Redis call failed; using the database for a moment");
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        let client = self.inner.client.as_ref()?;
        if self.breaker_open() {
            return None;
        }
        let mut guard = self.inner.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Some(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.inner.cfg.connect_timeout))
            .set_response_timeout(Some(self.inner.cfg.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let attempt = tokio::time::timeout(
            self.inner.cfg.connect_timeout * 2,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await;
        match attempt {
            Ok(Ok(c)) => {
                *guard = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.trip(&e);
                None
            }
            Err(_) => {
                self.trip(&"connect timed out");
                None
            }
        }
    }

    /// Runs one Redis operation within the response timeout; None on any failure.
    async fn redis<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.inner.cfg.response_timeout, op(conn.clone())).await {
            Ok(Ok(v)) => {
                self.flush_pending_deletes(conn).await;
                Some(v)
            }
            Ok(Err(e)) => {
                self.trip(&e);
                None
            }
            Err(_) => {
                self.trip(&"response timed out");
                None
            }
        }
    }

    /// Deletes that could not reach Redis during an outage, replayed once it
    /// answers, so an entry made stale during the outage cannot outlive it.
    async fn flush_pending_deletes(&self, mut conn: ConnectionManager) {
        let keys: Vec<String> = lock(&self.inner.pending_deletes).drain().collect();
        if keys.is_empty() {
            return;
        }
        let res =
            tokio::time::timeout(self.inner.cfg.response_timeout, conn.del::<_, ()>(&keys)).await;
        if !matches!(res, Ok(Ok(()))) {
            lock(&self.inner.pending_deletes).extend(keys);
        }
    }

    fn local_ttl(&self, ttl: Duration) -> Duration {
        if self.inner.client.is_some() {
            ttl.min(OUTAGE_LOCAL_TTL)
        } else {
            ttl
        }
    }

    fn local_get(&self, key: &str) -> Option<Arc<Vec<u8>>> {
        let mut local = lock(&self.inner.local);
        match local.get(key) {
            Some((v, exp)) if Instant::now() < *exp => Some(v.clone()),
            Some(_) => {
                local.remove(key);
                None
            }
            None => None,
        }
    }

    fn local_set(&self, key: &str, value: Arc<Vec<u8>>, ttl: Duration) {
        let cap = self.inner.cfg.local_capacity.max(1);
        let mut local = lock(&self.inner.local);
        if local.len() >= cap && !local.contains_key(key) {
            let now = Instant::now();
            local.retain(|_, (_, exp)| *exp > now);
            if local.len() >= cap {
                // Evict the entry closest to expiry.
                if let Some(victim) = local
                    .iter()
                    .min_by_key(|(_, (_, e))| *e)
                    .map(|(k, _)| k.clone())
                {
                    local.remove(&victim);
                }
            }
        }
        local.insert(
            key.to_string(),
            (value, Instant::now() + self.local_ttl(ttl)),
        );
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        if self.inner.client.is_some() {
            let full = self.full_key(key);
            if let Some(v) = self
                .redis(|mut c| async move { c.get::<_, Option<Vec<u8>>>(full).await })
                .await
            {
                return v;
            }
        }
        self.local_get(key).map(|v| v.as_ref().clone())
    }

    /// Stores with a TTL (always: no entry lives forever).
    pub async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let ttl = ttl
            .unwrap_or(self.inner.cfg.default_ttl)
            .max(Duration::from_millis(1));
        if self.inner.client.is_some() {
            let full = self.full_key(key);
            let bytes = value.to_vec();
            let ms = ttl.as_millis() as u64;
            let stored = self
                .redis(|mut c| async move { c.pset_ex::<_, _, ()>(full, bytes, ms).await })
                .await;
            if stored.is_some() {
                return;
            }
        }
        self.local_set(key, Arc::new(value.to_vec()), ttl);
    }

    /// Call after the database commit.
    pub async fn invalidate(&self, key: &str) {
        lock(&self.inner.local).remove(key);
        if self.inner.client.is_some() {
            let full = self.full_key(key);
            let deleted = self
                .redis(|mut c| async move { c.del::<_, ()>(full.clone()).await })
                .await;
            if deleted.is_none() {
                lock(&self.inner.pending_deletes).insert(self.full_key(key));
            }
        }
    }

    /// Cache-aside with single-flight: concurrent misses on one key in this process
    /// run `load` once and share the result. `None` results are not cached.
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
        if let Some(v) = self.get(key).await {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(v));
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        let (flight, leader) = {
            let mut inflight = lock(&self.inner.inflight);
            match inflight.get(key) {
                Some(f) => (f.clone(), false),
                None => {
                    let this = self.clone();
                    let owned = key.to_string();
                    let f = async move {
                        this.inner.loads.fetch_add(1, Ordering::Relaxed);
                        let loaded = load().await?;
                        if let Some(v) = &loaded {
                            this.set(&owned, v, ttl).await;
                        }
                        Ok(loaded.map(Arc::new))
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key.to_string(), f.clone());
                    (f, true)
                }
            }
        };
        let result = flight.await;
        if leader {
            lock(&self.inner.inflight).remove(key);
        }
        result.map(|v| v.map(|a| a.as_ref().clone()))
    }
}

#[cfg(test)]
mod tests;
