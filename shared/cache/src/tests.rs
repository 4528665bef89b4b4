//! Against the real Redis at 127.0.0.1:6379 (or `RETENTION_TEST_REDIS`), each
//! test under its own random namespace, removing its keys at the end (every
//! entry also has a TTL, so a failed test leaks nothing for long). Outages are
//! simulated with closed ports, a silent listener or a private redis-server:
//! the shared server is never stopped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use super::*;

fn namespace() -> String {
    format!("test:{}", uuid::Uuid::new_v4())
}

fn redis_url() -> String {
    std::env::var("RETENTION_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn config(url: &str) -> CacheConfig {
    CacheConfig {
        redis_url: Some(url.to_string()),
        namespace: namespace(),
        ..CacheConfig::default()
    }
}

async fn redis_cache() -> Cache {
    let cache = Cache::connect(config(&redis_url())).await;
    assert!(cache.redis_available(), "the test Redis must be running");
    cache
}

async fn raw_at(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("raw Redis connection")
}

async fn raw() -> MultiplexedConnection {
    raw_at(&redis_url()).await
}

/// Deletes every key of the cache's namespace.
async fn cleanup(cache: &Cache) {
    let mut conn = raw().await;
    let pattern = cache.full_key("*");
    let keys: Vec<String> = {
        let mut iter = conn.scan_match::<_, String>(&pattern).await.expect("SCAN");
        let mut keys = Vec::new();
        while let Some(k) = iter.next_item().await {
            keys.push(k.expect("SCAN item"));
        }
        keys
    };
    if !keys.is_empty() {
        let _: () = conn.del(keys).await.expect("DEL");
    }
}

/// A local port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

async fn exists(conn: &mut MultiplexedConnection, key: &str) -> bool {
    conn.exists(key).await.expect("EXISTS")
}

#[tokio::test]
async fn values_live_in_redis_with_a_ttl_and_invalidate_removes_them() {
    let cache = redis_cache().await;
    let mut conn = raw().await;
    cache.set("k", b"v1", Some(Duration::from_secs(30))).await;
    assert_eq!(cache.get("k").await.as_deref(), Some(&b"v1"[..]));

    let stored: Option<Vec<u8>> = conn.get(cache.full_key("k")).await.expect("GET");
    assert_eq!(stored.as_deref(), Some(&b"v1"[..]), "stored under full_key");
    let ttl: i64 = conn.pttl(cache.full_key("k")).await.expect("PTTL");
    assert!(ttl > 0 && ttl <= 30_000, "every entry has a TTL ({ttl})");

    // No TTL given: the default one, never "forever".
    cache.set("d", b"x", None).await;
    let ttl: i64 = conn.pttl(cache.full_key("d")).await.expect("PTTL");
    assert!(ttl > 0 && ttl <= 300_000, "default TTL ({ttl})");

    cache.invalidate("k").await;
    assert_eq!(cache.get("k").await, None);
    assert!(!exists(&mut conn, &cache.full_key("k")).await);
    assert!(lock(&cache.inner.pending).is_empty());
    cleanup(&cache).await;
}

#[tokio::test]
async fn entries_expire_in_redis() {
    let cache = redis_cache().await;
    let mut conn = raw().await;
    cache
        .set("short", b"x", Some(Duration::from_millis(80)))
        .await;
    assert_eq!(cache.get("short").await.as_deref(), Some(&b"x"[..]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cache.get("short").await, None);
    assert!(!exists(&mut conn, &cache.full_key("short")).await);
    cleanup(&cache).await;
}

#[tokio::test]
async fn get_or_load_loads_once_then_hits_and_does_not_cache_none() {
    let cache = redis_cache().await;
    for _ in 0..3 {
        let v = cache
            .get_or_load("user", None, || async { Ok(Some(b"loaded".to_vec())) })
            .await;
        assert_eq!(v, Ok(Some(b"loaded".to_vec())));
    }
    let s = cache.stats();
    assert_eq!(s.loads, 1);
    assert_eq!(s.hits, 2);
    assert_eq!(s.misses, 1);
    assert_eq!(s.redis_errors, 0);

    for _ in 0..2 {
        let v = cache
            .get_or_load("absent", None, || async { Ok(None) })
            .await;
        assert_eq!(v, Ok(None));
    }
    assert_eq!(cache.stats().loads, 3, "None is not cached");
    assert!(!exists(&mut raw().await, &cache.full_key("absent")).await);
    cleanup(&cache).await;
}

#[tokio::test]
async fn loader_errors_reach_every_caller_and_are_not_cached() {
    let cache = redis_cache().await;
    let v = cache
        .get_or_load("e", None, || async { Err("db down".to_string()) })
        .await;
    assert_eq!(v, Err("db down".to_string()));
    let v = cache
        .get_or_load("e", None, || async { Ok(Some(b"ok".to_vec())) })
        .await;
    assert_eq!(v, Ok(Some(b"ok".to_vec())));
    assert_eq!(cache.stats().loads, 2);
    cleanup(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_load_once() {
    let cache = redis_cache().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("hot", None, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some(b"v".to_vec()))
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), Ok(Some(b"v".to_vec())));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "single flight");
    assert_eq!(cache.stats().loads, 1);
    assert!(
        lock(&cache.inner.flights).is_empty(),
        "finished flights are forgotten"
    );
    cleanup(&cache).await;
}

#[tokio::test]
async fn replicas_never_read_a_local_copy_another_replica_invalidated() {
    let a = redis_cache().await;
    let b = Cache::connect(CacheConfig {
        namespace: a.inner.cfg.namespace.clone(),
        ..config(&redis_url())
    })
    .await;
    let v = a
        .get_or_load("c", None, || async { Ok(Some(b"v1".to_vec())) })
        .await;
    assert_eq!(v, Ok(Some(b"v1".to_vec())));
    assert_eq!(b.get("c").await.as_deref(), Some(&b"v1"[..]), "shared");
    b.invalidate("c").await; // replica B committed a change
    let v = a
        .get_or_load("c", None, || async { Ok(Some(b"v2".to_vec())) })
        .await;
    assert_eq!(
        v,
        Ok(Some(b"v2".to_vec())),
        "A sees B's invalidation at once"
    );
    cleanup(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_load_keeps_its_result_out_of_the_cache() {
    let cache = redis_cache().await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("row", None, move || async move {
                    let _ = started_tx.send(());
                    let _ = release_rx.await;
                    Ok(Some(b"before commit".to_vec()))
                })
                .await
        })
    };
    started_rx.await.expect("load started");
    cache.invalidate("row").await; // the writer committed meanwhile
    let _ = release_tx.send(());
    assert_eq!(
        reader.await.expect("task"),
        Ok(Some(b"before commit".to_vec()))
    );
    assert!(!exists(&mut raw().await, &cache.full_key("row")).await);
    let v = cache
        .get_or_load("row", None, || async { Ok(Some(b"after commit".to_vec())) })
        .await;
    assert_eq!(v, Ok(Some(b"after commit".to_vec())));
    cleanup(&cache).await;
}

async fn assert_degrades_quickly(cache: &Cache) {
    let started = Instant::now();
    for i in 0..20 {
        let v = cache
            .get_or_load(&format!("k{i}"), None, || async {
                Ok(Some(b"db".to_vec()))
            })
            .await;
        assert_eq!(v, Ok(Some(b"db".to_vec())));
    }
    let elapsed = started.elapsed();
    // 20 × the 250ms timeouts would be ≥ 5s; the breaker makes it one timeout.
    assert!(elapsed < Duration::from_secs(2), "breaker: {elapsed:?}");
    assert!(cache.stats().redis_errors >= 1);
    assert_eq!(cache.stats().loads, 20);
    assert!(!cache.redis_available());

    // Writes and reads still return at once; with no invalidation subscription
    // the near cache is bypassed, so nothing is served from memory.
    assert!(!cache.near_cache_live());
    cache.set("local", b"l", None).await;
    assert_eq!(cache.get("local").await, None);
    cache.invalidate("local").await;
    assert_eq!(cache.get("local").await, None);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_unreachable_redis_degrades_quickly_to_the_loader() {
    let cache = Cache::connect(config(&format!("redis://127.0.0.1:{}", free_port()))).await;
    assert!(!cache.redis_available());
    assert_degrades_quickly(&cache).await;
}

#[tokio::test]
async fn a_redis_that_never_answers_degrades_quickly_to_the_loader() {
    // Accepts connections and never replies, like a hung server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let cache = Cache::connect(config(&format!("redis://127.0.0.1:{port}"))).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "connect is bounded"
    );
    assert_degrades_quickly(&cache).await;
    silent.abort();
}

#[tokio::test]
async fn an_invalid_url_means_in_process_only() {
    let cache = Cache::connect(config("not a url")).await;
    assert!(!cache.redis_available());
    cache.set("k", b"v", None).await;
    assert_eq!(cache.get("k").await.as_deref(), Some(&b"v"[..]));
}

/// A private redis-server, killed when dropped (even if the test fails).
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let server = PrivateRedis {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn invalidations_during_an_outage_are_replayed_after_recovery() {
    let mut server = PrivateRedis::start(free_port());
    let url = server.url();
    let cache = Cache::connect(config(&url)).await;
    assert!(cache.redis_available());
    cache.set("stale", b"old", None).await;
    assert_eq!(cache.get("stale").await.as_deref(), Some(&b"old"[..]));

    server.stop();
    cache.invalidate("stale").await; // cannot reach Redis: remembered
    assert!(cache.stats().redis_errors >= 1);
    assert!(lock(&cache.inner.pending).contains_key(&cache.full_key("stale")));
    assert_eq!(cache.get("stale").await, None);

    let _server = PrivateRedis::start(server.port);
    // An entry that survived the outage (e.g. a persistent Redis, or another
    // replica re-filling it from a lagging read).
    let mut conn = raw_at(&url).await;
    let _: () = conn
        .set_ex(cache.full_key("stale"), b"old".to_vec(), 60)
        .await
        .expect("SET");

    // This process never serves the key while its delete is pending ...
    assert_eq!(cache.get("stale").await, None);
    // ... and the background replay removes it from Redis with no further calls.
    let deadline = Instant::now() + Duration::from_secs(5);
    while exists(&mut conn, &cache.full_key("stale")).await {
        assert!(
            Instant::now() < deadline,
            "the pending invalidation removed the stale entry after recovery"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(lock(&cache.inner.pending).is_empty());

    // Recovered: values go to Redis again.
    cache.set("fresh", b"new", None).await;
    assert!(cache.redis_available());
    assert!(exists(&mut conn, &cache.full_key("fresh")).await);
}

#[tokio::test]
async fn in_process_mode_needs_no_redis() {
    let cache = Cache::in_process("ns", Duration::from_secs(60));
    assert!(!cache.redis_available());
    assert_eq!(cache.full_key("a"), "ns:a");
    cache.set("a", b"1", None).await;
    assert_eq!(cache.get("a").await.as_deref(), Some(&b"1"[..]));
    cache.invalidate("a").await;
    assert_eq!(cache.get("a").await, None);

    for _ in 0..3 {
        let v = cache
            .get_or_load("u", None, || async { Ok(Some(b"x".to_vec())) })
            .await;
        assert_eq!(v, Ok(Some(b"x".to_vec())));
    }
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(cache.stats().redis_errors, 0);

    cache
        .set("short", b"s", Some(Duration::from_millis(30)))
        .await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(cache.get("short").await, None, "local entries expire");
}

#[tokio::test]
async fn the_local_tier_is_bounded() {
    let cache = Cache::build(
        CacheConfig {
            local_capacity: 3,
            ..CacheConfig::default()
        },
        None,
    );
    for i in 0..5 {
        cache.set(&format!("k{i}"), b"v", None).await;
    }
    assert_eq!(lock(&cache.inner.near).tier.len(), 3);
    assert_eq!(cache.get("k0").await, None, "oldest evicted");
    assert_eq!(cache.get("k1").await, None);
    assert_eq!(cache.get("k4").await.as_deref(), Some(&b"v"[..]));

    let disabled = Cache::build(
        CacheConfig {
            local_capacity: 0,
            ..CacheConfig::default()
        },
        None,
    );
    disabled.set("k", b"v", None).await;
    assert_eq!(disabled.get("k").await, None);
}

#[test]
fn local_tier_evicts_expired_then_soonest_to_expire() {
    let now = Instant::now();
    let mut tier = LocalTier::new(2, usize::MAX);
    tier.insert("long", Arc::from(&b"l"[..]), Duration::from_secs(60), now);
    tier.insert("short", Arc::from(&b"s"[..]), Duration::from_secs(1), now);
    tier.insert("new", Arc::from(&b"n"[..]), Duration::from_secs(30), now);
    assert!(tier.get("short", now).is_none(), "closest to expiry goes");
    assert!(tier.get("long", now).is_some());

    let later = now + Duration::from_secs(40);
    tier.insert("x", Arc::from(&b"x"[..]), Duration::from_secs(30), later);
    assert!(tier.get("new", later).is_none(), "expired entry went first");
    assert!(tier.get("long", later).is_some());
    assert!(tier.get("x", later).is_some());

    // Re-inserting a key replaces it without growing.
    tier.insert("x", Arc::from(&b"y"[..]), Duration::from_secs(30), later);
    assert_eq!(tier.len(), 2);
    assert_eq!(tier.get("x", later).as_deref(), Some(&b"y"[..]));
    assert_eq!(tier.by_expiry.len(), 2, "index stays in step");
}

/// A second cache (another replica) on `a`'s namespace and Redis.
async fn replica_of(a: &Cache, url: &str) -> Cache {
    let b = Cache::connect(CacheConfig {
        namespace: a.inner.cfg.namespace.clone(),
        ..config(url)
    })
    .await;
    assert!(b.near_cache_live(), "connect waits for the subscription");
    b
}

fn near_len(cache: &Cache) -> usize {
    lock(&cache.inner.near).tier.len()
}

#[tokio::test]
async fn an_invalidation_on_one_replica_empties_every_near_cache_before_it_returns() {
    let a = redis_cache().await;
    assert!(a.near_cache_live());
    let b = replica_of(&a, &redis_url()).await;
    let mut conn = raw().await;

    a.set("c", b"v1", None).await;
    assert_eq!(b.get("c").await.as_deref(), Some(&b"v1"[..]), "from Redis");
    // Both near caches hold it now: with the Redis entry gone behind their
    // backs (no invalidation), both still answer, from memory.
    let _: () = conn.del(a.full_key("c")).await.expect("DEL");
    assert_eq!(a.get("c").await.as_deref(), Some(&b"v1"[..]));
    assert_eq!(b.get("c").await.as_deref(), Some(&b"v1"[..]));
    assert_eq!(a.stats().near_hits, 1);
    assert_eq!(b.stats().near_hits, 1);
    let _: () = conn
        .set_ex(a.full_key("c"), b"v1".to_vec(), 60)
        .await
        .expect("SET");

    // Replica A commits a change: once invalidate returns, B has dropped its
    // copy (it acknowledged), so B's very next read misses everywhere.
    a.invalidate("c").await;
    assert_eq!(a.stats().unacknowledged, 0, "every replica acknowledged");
    assert_eq!(near_len(&b), 0);
    assert_eq!(b.get("c").await, None);
    assert_eq!(a.get("c").await, None);
    assert!(!exists(&mut conn, &a.full_key("c")).await);
    assert_eq!(b.stats().near_hits, 1, "no near hit after the invalidation");

    // And the other way round, through get_or_load.
    let v = b
        .get_or_load("d", None, || async { Ok(Some(b"d1".to_vec())) })
        .await;
    assert_eq!(v, Ok(Some(b"d1".to_vec())));
    assert_eq!(a.get("d").await.as_deref(), Some(&b"d1"[..]));
    b.invalidate("d").await;
    assert_eq!(b.stats().unacknowledged, 0);
    let v = a
        .get_or_load("d", None, || async { Ok(Some(b"d2".to_vec())) })
        .await;
    assert_eq!(v, Ok(Some(b"d2".to_vec())), "A reloads at once");
    cleanup(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replicas_invalidation_keeps_a_load_in_progress_out_of_the_cache() {
    let a = redis_cache().await;
    let b = replica_of(&a, &redis_url()).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = {
        let b = b.clone();
        tokio::spawn(async move {
            b.get_or_load("row", None, move || async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                Ok(Some(b"before commit".to_vec()))
            })
            .await
        })
    };
    started_rx.await.expect("load started");
    a.invalidate("row").await; // replica A committed meanwhile
    let _ = release_tx.send(());
    assert_eq!(
        reader.await.expect("task"),
        Ok(Some(b"before commit".to_vec()))
    );
    assert_eq!(near_len(&b), 0, "not kept near");
    assert!(
        !exists(&mut raw().await, &a.full_key("row")).await,
        "nor in Redis"
    );
    cleanup(&a).await;
}

#[tokio::test]
async fn near_entries_expire_after_the_near_ttl() {
    let cache = Cache::connect(CacheConfig {
        near_ttl: Duration::from_millis(100),
        ..config(&redis_url())
    })
    .await;
    assert!(cache.near_cache_live());
    let mut conn = raw().await;
    cache.set("k", b"v1", None).await;
    // Changed in Redis with no invalidation (a lost one): the near copy is
    // served until the near TTL ends, never longer.
    let _: () = conn
        .set_ex(cache.full_key("k"), b"v2".to_vec(), 60)
        .await
        .expect("SET");
    assert_eq!(cache.get("k").await.as_deref(), Some(&b"v1"[..]));
    let deadline = Instant::now() + Duration::from_secs(2);
    while cache.get("k").await.as_deref() != Some(&b"v2"[..]) {
        assert!(Instant::now() < deadline, "the near copy outlived its TTL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cleanup(&cache).await;
}

#[tokio::test]
async fn losing_the_subscription_clears_and_bypasses_the_near_cache() {
    let mut server = PrivateRedis::start(free_port());
    let url = server.url();
    let a = Cache::connect(config(&url)).await;
    assert!(a.near_cache_live());
    let b = replica_of(&a, &url).await;
    a.set("k", b"v1", None).await;
    assert_eq!(b.get("k").await.as_deref(), Some(&b"v1"[..]));
    assert_eq!(near_len(&a), 1);
    assert_eq!(near_len(&b), 1);

    server.stop();
    // The subscription sees the connection close: each near cache is emptied
    // and no longer used, so an invalidation it cannot hear cannot be missed.
    for cache in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(3);
        while cache.near_cache_live() {
            assert!(Instant::now() < deadline, "the loss was noticed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(near_len(cache), 0, "cleared");
        assert_eq!(cache.get("k").await, None, "bypassed");
        assert!(cache.stats().subscription_losses >= 1);
    }
    let near_hits = b.stats().near_hits;
    b.set("k", b"local", None).await;
    assert_eq!(b.get("k").await, None, "not filled while unsubscribed");
    assert_eq!(b.stats().near_hits, near_hits);

    // Redis returns (empty, as a restarted server without persistence is):
    // both subscribe again and the near cache is back in service.
    let _server = PrivateRedis::start(server.port);
    assert!(a.wait_near_live(Duration::from_secs(5)).await);
    assert!(b.wait_near_live(Duration::from_secs(5)).await);
    assert_eq!(near_len(&a), 0, "nothing from before the loss");
    // The breaker may still be open for a moment after the outage.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !a.redis_available() || !b.redis_available() {
        assert!(Instant::now() < deadline, "Redis answers again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.set("k", b"v2", None).await;
    assert_eq!(b.get("k").await.as_deref(), Some(&b"v2"[..]));
    a.invalidate("k").await;
    assert_eq!(a.stats().unacknowledged, 0);
    assert_eq!(b.get("k").await, None);
}

#[tokio::test]
async fn the_near_cache_is_bounded_in_entries_and_bytes() {
    let by_count = Cache::connect(CacheConfig {
        local_capacity: 3,
        ..config(&redis_url())
    })
    .await;
    for i in 0..10 {
        by_count.set(&format!("k{i}"), b"v", None).await;
    }
    assert_eq!(near_len(&by_count), 3);
    // Evicted from memory only: Redis still answers (and refills the near cache).
    assert_eq!(by_count.get("k0").await.as_deref(), Some(&b"v"[..]));
    assert_eq!(near_len(&by_count), 3);
    cleanup(&by_count).await;

    let by_bytes = Cache::connect(CacheConfig {
        local_max_bytes: 1_000,
        ..config(&redis_url())
    })
    .await;
    for i in 0..10 {
        by_bytes.set(&format!("k{i}"), &[7u8; 300], None).await;
    }
    {
        let near = lock(&by_bytes.inner.near);
        assert!(near.tier.bytes <= 1_000, "{} bytes", near.tier.bytes);
        assert_eq!(near.tier.len(), 3, "three of ~303 bytes fit in 1,000");
    }
    // Larger than the whole bound: never kept near, still cached in Redis.
    by_bytes.set("big", &[1u8; 2_000], None).await;
    assert!(
        lock(&by_bytes.inner.near)
            .tier
            .get("big", Instant::now())
            .is_none()
    );
    assert_eq!(by_bytes.get("big").await.map(|v| v.len()), Some(2_000));
    cleanup(&by_bytes).await;
}

#[test]
fn local_tier_counts_bytes_through_replace_remove_and_clear() {
    let now = Instant::now();
    let mut tier = LocalTier::new(10, 10);
    tier.insert("a", Arc::from(&b"1234"[..]), Duration::from_secs(5), now);
    assert_eq!(tier.bytes, 5);
    tier.insert("a", Arc::from(&b"12"[..]), Duration::from_secs(5), now);
    assert_eq!(tier.bytes, 3, "a replaced value is counted once");
    tier.insert("b", Arc::from(&b"123456"[..]), Duration::from_secs(5), now);
    assert_eq!(tier.bytes, 10);
    tier.insert("c", Arc::from(&b"1"[..]), Duration::from_secs(5), now);
    assert!(tier.get("a", now).is_none(), "oldest evicted for bytes");
    assert_eq!(tier.bytes, 9);
    tier.remove("b");
    assert_eq!(tier.bytes, 2);
    tier.clear();
    assert_eq!((tier.bytes, tier.len(), tier.by_expiry.len()), (0, 0, 0));
}

#[test]
fn invalidation_messages_round_trip() {
    let m = invalidation_message("origin.1", 42, "profile:customer:a b\nc");
    assert_eq!(
        parse_invalidation(m.as_bytes()),
        Some(("origin.1", 42, "profile:customer:a b\nc"))
    );
    assert_eq!(parse_invalidation(b"garbage"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_invalidations_at_once_reach_every_near_cache() {
    let a = redis_cache().await;
    let b = replica_of(&a, &redis_url()).await;
    let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
    for k in &keys {
        a.set(k, b"v", None).await;
        assert!(b.get(k).await.is_some());
    }
    assert_eq!(near_len(&b), 500);

    // One call for a page (one round trip, one wait) ...
    a.invalidate_many(&keys[..250]).await;
    assert_eq!(near_len(&b), 250);
    // ... or one call per key, all at once (as a scoring page does today).
    futures::future::join_all(keys[250..].iter().map(|k| a.invalidate(k))).await;
    assert_eq!(near_len(&b), 0);
    assert_eq!(near_len(&a), 0);
    assert_eq!(
        a.stats().unacknowledged,
        0,
        "every key acknowledged in time"
    );
    let mut conn = raw().await;
    for k in &keys {
        assert!(!exists(&mut conn, &a.full_key(k)).await);
    }
    assert!(lock(&a.inner.pending).is_empty());
    assert!(
        lock(&a.inner.acks).is_empty(),
        "finished waits are forgotten"
    );
    cleanup(&a).await;
}

#[tokio::test]
async fn a_value_stored_just_before_another_replicas_invalidation_is_taken_back() {
    // The race: replica C loads from the database before replica A commits, A
    // deletes the key, then C's SET lands; A's message reaches C after C's
    // load has finished. Simulated by an invalidation published with no DEL.
    let c = redis_cache().await;
    let b = replica_of(&c, &redis_url()).await;
    let v = c
        .get_or_load("k", None, || async { Ok(Some(b"before commit".to_vec())) })
        .await;
    assert_eq!(v, Ok(Some(b"before commit".to_vec())));
    let mut conn = raw().await;
    assert!(exists(&mut conn, &c.full_key("k")).await);
    let receivers: usize = conn
        .publish(
            c.inner.invalidation_channel(),
            invalidation_message("replica-a", 1, "k"),
        )
        .await
        .expect("PUBLISH");
    assert_eq!(receivers, 2);
    let deadline = Instant::now() + Duration::from_secs(2);
    while exists(&mut conn, &c.full_key("k")).await {
        assert!(Instant::now() < deadline, "C took its store back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.get("k").await, None);
    assert_eq!(c.get("k").await, None);
    // Taken back once: a later invalidation finds nothing to take back.
    assert!(!c.inner.stored_lately("k"));
    cleanup(&c).await;
}
