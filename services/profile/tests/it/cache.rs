//! Cache-aside: a read fills Redis, a write invalidates it, and a Redis outage
//! degrades to the database without errors.

use redis::AsyncCommands;
use retention_proto::profile as pb;
use retention_testkit::{Backend, PrivateRedis};

use crate::harness::*;

fn cache_key(app: &TestApp, name: &str) -> String {
    format!(
        "{}:profile:customer:{}",
        app.settings.redis.namespace,
        name.trim_start_matches("customers/")
    )
}

async fn redis_get(url: &str, key: &str) -> Option<Vec<u8>> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    conn.get(key).await.unwrap()
}

#[tokio::test]
async fn reads_fill_the_cache_and_writes_invalidate_it() {
    let mut app = TestApp::spawn(Backend::Postgres).await;
    let c = app.create("Cached").await;
    let key = cache_key(&app, &c.name);
    let url = app.settings.redis.url.clone();
    assert!(
        redis_get(&url, &key).await.is_none(),
        "create does not populate the cache"
    );

    app.client
        .get_customer(app.req(pb::GetCustomerRequest {
            name: c.name.clone(),
        }))
        .await
        .unwrap();
    let cached = redis_get(&url, &key).await.expect("a read fills the cache");
    let cached = String::from_utf8_lossy(&cached);
    assert!(
        cached.starts_with("enc1:") && !cached.contains("Cached") && !cached.contains("@"),
        "PII is sealed in Redis too: {cached}"
    );

    // Prove the next read is served from the cache: change the row behind its back.
    let id = c.name.trim_start_matches("customers/");
    let db = app.database().await;
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(&format!(
        "UPDATE customers SET region = 'Behind The Cache' WHERE id = '{id}'"
    ))
    .await
    .unwrap();
    let hit = app.get(&c.name).await;
    assert_eq!(
        hit.demographics.as_ref().unwrap().region,
        "Shanghai",
        "served from the cache"
    );

    // A write through the API invalidates; the next read sees the database.
    let mut patch = hit.clone();
    patch.email = "changed@example.com".into();
    app.client
        .update_customer(app.req(pb::UpdateCustomerRequest {
            customer: Some(patch),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into()],
            }),
        }))
        .await
        .unwrap();
    assert!(
        redis_get(&url, &key).await.is_none(),
        "the write invalidated the entry"
    );
    let fresh = app.get(&c.name).await;
    assert_eq!(fresh.email, "changed@example.com");
    assert_eq!(fresh.demographics.unwrap().region, "Behind The Cache");
    app.stop().await;
}

#[tokio::test]
async fn the_service_keeps_answering_with_redis_stopped() {
    let mut redis = PrivateRedis::start().unwrap();
    let url = redis.url();
    let mut app = TestApp::spawn_with(Backend::Postgres, true, |s| s.redis.url = url.clone()).await;
    let c = app.create("Resilient").await;
    app.client
        .get_customer(app.req(pb::GetCustomerRequest {
            name: c.name.clone(),
        }))
        .await
        .unwrap();

    redis.stop();
    // Reads, writes and creates all still succeed from the database.
    for i in 0..5 {
        let got = app.get(&c.name).await;
        assert_eq!(got.name, c.name);
        let mut patch = got.clone();
        patch.email = format!("v{i}@example.com");
        let updated = app
            .client
            .update_customer(app.req(pb::UpdateCustomerRequest {
                customer: Some(patch),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.email, format!("v{i}@example.com"));
        let again = app.get(&c.name).await;
        assert_eq!(
            again.email,
            format!("v{i}@example.com"),
            "no stale read during the outage"
        );
    }
    app.create("Created During Outage").await;
    let pending = app
        .count("SELECT COUNT(*) FROM outbox_events WHERE published_at IS NULL")
        .await;
    assert!(
        pending >= 6,
        "events wait in the outbox while Redis is down ({pending})"
    );

    // Redis returns: the relay delivers everything that waited.
    redis.restart().unwrap();
    let stream =
        retention_events::stream_key(&app.settings.redis.namespace, "retention.profile.events");
    let total = app.count("SELECT COUNT(*) FROM outbox_events").await;
    assert_eq!(
        app.unpublished_after_relay().await,
        0,
        "every held event was relayed after recovery (total {total})"
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let delivered: i64 = conn.xlen(&stream).await.unwrap();
    assert!(
        delivered >= pending,
        "held events are in the stream: {delivered} of {pending}"
    );
    app.stop().await;
}

/// Two replicas on one database and one Redis namespace, each with its near
/// cache: a change through one is never served afterwards by the other.
#[tokio::test]
async fn an_erased_customer_is_absent_from_every_replicas_near_cache() {
    let mut a = TestApp::spawn(Backend::Postgres).await;
    let mut b = a.replica().await;
    let url = a.settings.redis.url.clone();
    let erased = a.create("Erased").await;
    let updated = a.create("Updated").await;
    let survivor = a.create("Survivor").await;
    let merged = a.create("Merged").await;
    let all = [&erased, &updated, &survivor, &merged];

    // Read through both replicas: A fills Redis, B reads it from there, and
    // each keeps a near copy.
    for c in all {
        a.get(&c.name).await;
        let req = a.req(pb::GetCustomerRequest {
            name: c.name.clone(),
        });
        b.client.get_customer(req).await.expect("get through B");
    }
    // Prove both answer from memory: the row changes behind the cache and the
    // Redis entries go (with no invalidation), yet both replicas still answer
    // the old state.
    let db = a.database().await;
    use sea_orm::ConnectionTrait;
    db.execute_unprepared("UPDATE customers SET region = 'Behind The Cache'")
        .await
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for c in all {
        let _: () = conn.del(cache_key(&a, &c.name)).await.unwrap();
        let from_a = a.get(&c.name).await;
        let req = a.req(pb::GetCustomerRequest {
            name: c.name.clone(),
        });
        let from_b = b.client.get_customer(req).await.unwrap().into_inner();
        for got in [from_a, from_b] {
            assert_eq!(
                got.demographics.unwrap().region,
                "Shanghai",
                "{} from a near cache",
                c.name
            );
        }
    }

    // Erase through A; the very next reads through B (and A) answer NOT_FOUND.
    a.erase(&erased.name).await;
    let token = retention_testkit::mint_token(&a.settings, ALL_SCOPES);
    let get = |name: &str| {
        retention_testkit::with_token(
            pb::GetCustomerRequest {
                name: name.to_string(),
            },
            &token,
        )
    };
    let err = b.client.get_customer(get(&erased.name)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "B serves no erased copy");
    let err = a.client.get_customer(get(&erased.name)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = b
        .client
        .batch_get_customers(a.req(pb::BatchGetCustomersRequest {
            names: vec![erased.name.clone()],
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "nor through BatchGet");
    assert!(
        redis_get(&url, &cache_key(&a, &erased.name))
            .await
            .is_none()
    );

    // Update through B; A answers the new state at once.
    let mut patch = updated.clone();
    patch.email = "moved@example.com".into();
    b.client
        .update_customer(a.req(pb::UpdateCustomerRequest {
            customer: Some(patch),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into()],
            }),
        }))
        .await
        .unwrap();
    let fresh = a.get(&updated.name).await;
    assert_eq!(fresh.email, "moved@example.com");
    assert_eq!(fresh.demographics.unwrap().region, "Behind The Cache");

    // Merge through A; B resolves the merged id to the survivor at once.
    a.merge(&survivor.name, &merged.name).await;
    let got = b
        .client
        .get_customer(get(&merged.name))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, survivor.name, "B serves no pre-merge copy");
    assert_eq!(got.demographics.unwrap().region, "Behind The Cache");

    b.stop().await;
    a.stop().await;
}
