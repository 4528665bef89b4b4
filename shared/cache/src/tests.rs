use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use super::*;

fn namespace() -> String {
    format!(
        "test:cache:{}:{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_u64()
    )
}

fn rand_u64() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn redis_url() -> String {
    std::env::var("RETENTION_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis_cache() -> Cache {
    Cache::connect(CacheConfig {
        redis_url: Some(redis_url()),
        namespace: namespace(),
        ..CacheConfig::default()
    })
    .await
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn values_live_in_redis_with_a_ttl_and_invalidate_removes_them() {
    let cache = redis_cache().await;
    cache.set("k", b"v1", Some(Duration::from_secs(30))).await;
    assert_eq!(cache.get("k").await.as_deref(), Some(&b"v1"[..]));
    let mut conn = raw().await;
    let ttl: i64 = conn.pttl(cache.full_key("k")).await.unwrap();
    assert!(ttl > 0 && ttl <= 30_000, "every entry has a TTL ({ttl})");
    cache.invalidate("k").await;
    assert_eq!(cache.get("k").await, None);
    let exists: bool = conn.exists(cache.full_key("k")).await.unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn entries_expire() {
    let cache = redis_cache().await;
    cache
        .set("short", b"x", Some(Duration::from_millis(50)))
        .await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(cache.get("short").await, None);
}

#[tokio::test]
async fn get_or_load_loads_once_then_hits() {
    let cache = redis_cache().await;
    for _ in 0..3 {
        let v = cache
            .get_or_load("user", None, || async { Ok(Some(b"loaded".to_vec())) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&b"loaded"[..]));
    }
    let s = cache.stats();
    assert_eq!(s.loads, 1);
    assert_eq!(s.hits, 2);
    // None is not cached.
    for _ in 0..2 {
        assert_eq!(
            cache
                .get_or_load("absent", None, || async { Ok(None) })
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(cache.stats().loads, 3);
}

#[tokio::test]
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
        assert_eq!(t.await.unwrap().unwrap().as_deref(), Some(&b"v"[..]));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "single flight");
}

#[tokio::test]
async fn an_unreachable_redis_degrades_quickly_to_the_loader() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = Cache::connect(CacheConfig {
        redis_url: Some(format!("redis://127.0.0.1:{port}")),
        namespace: namespace(),
        ..CacheConfig::default()
    })
    .await;
    let started = Instant::now();
    for i in 0..20 {
        let v = cache
            .get_or_load(&format!("k{i}"), None, || async {
                Ok(Some(b"db".to_vec()))
            })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&b"db"[..]));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "breaker keeps calls fast: {:?}",
        started.elapsed()
    );
    assert!(cache.stats().redis_errors >= 1);
    assert!(!cache.redis_available());
}

#[tokio::test]
async fn invalidations_during_an_outage_are_replayed_after_recovery() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    };
    let url = format!("redis://127.0.0.1:{port}");
    let mut server = start();
    let cache = Cache::connect(CacheConfig {
        redis_url: Some(url.clone()),
        namespace: namespace(),
        ..CacheConfig::default()
    })
    .await;
    cache.set("stale", b"old", None).await;
    server.kill().unwrap();
    server.wait().unwrap();
    cache.invalidate("stale").await; // cannot reach Redis: remembered
    let mut server = start();
    // Simulate an entry that survived the outage (e.g. a persistent Redis).
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = conn
        .set_ex(cache.full_key("stale"), b"old".to_vec(), 60)
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if cache.get("stale").await.is_none() {
            let exists: bool = conn.exists(cache.full_key("stale")).await.unwrap();
            if !exists {
                gone = true;
                break;
            }
        }
    }
    server.kill().ok();
    server.wait().ok();
    assert!(
        gone,
        "the pending invalidation removed the stale entry after recovery"
    );
}

#[tokio::test]
async fn in_process_mode_needs_no_redis_and_is_bounded() {
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
    let held = (0..5)
        .filter(|i| lock(&cache.inner.local).contains_key(&format!("k{i}")))
        .count();
    assert_eq!(held, 3);
    let c = Cache::in_process("ns", Duration::from_secs(60));
    c.set("a", b"1", None).await;
    assert_eq!(c.get("a").await.as_deref(), Some(&b"1"[..]));
    c.invalidate("a").await;
    assert_eq!(c.get("a").await, None);
}
