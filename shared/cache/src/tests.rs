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

    // Writes and reads still work, from the short-lived local tier.
    cache.set("local", b"l", None).await;
    assert_eq!(cache.get("local").await.as_deref(), Some(&b"l"[..]));
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
    assert_eq!(lock(&cache.inner.local).len(), 3);
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
    let mut tier = LocalTier::new(2);
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
