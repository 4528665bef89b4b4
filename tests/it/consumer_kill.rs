//! A replica killed (SIGKILL) while its segmentation consumer holds delivered but
//! unacknowledged events: a second replica claims them, and every purchase
//! profile committed is folded into segmentation's features exactly once.
//! Two `retention` processes on PostgreSQL and Redis, as in production.

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use retention_proto::profile as ppb;
use retention_proto::profile::customer_profile_service_client::CustomerProfileServiceClient;
use retention_testkit::TestDb;
use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::process::{
    SERVICES, count, dev_token, free_port, load_customer, load_purchase, retention_in, serving,
    unpublished, with_token,
};

const CLAIM_IDLE_MS: u64 = 1_000;

/// One `retention` process with every service on its own ports, sharing the
/// databases and the Redis namespace with any other replica.
struct Replica {
    child: Child,
    dir: std::path::PathBuf,
    profile_port: u16,
}

impl Replica {
    fn start(dbs: &[TestDb], namespace: &str) -> Replica {
        let dir = std::env::temp_dir().join(format!("retention-kill-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(dir.join("config")).unwrap();
        let mut profile_port = 0;
        for (service, db) in SERVICES.iter().zip(dbs) {
            let port = free_port();
            if *service == "profile" {
                profile_port = port;
            }
            std::fs::write(
                dir.join("config").join(format!("{service}.toml")),
                format!(
                    "[service]\nport = {port}\n[database]\nurl = \"{}\"\n\
                     [redis]\nurl = \"{}\"\nnamespace = \"{namespace}\"\n\
                     [events]\nclaim_idle_ms = {CLAIM_IDLE_MS}\nrelay_interval_ms = 20\n",
                    db.url,
                    retention_testkit::redis_url(),
                ),
            )
            .unwrap();
        }
        Replica {
            child: retention_in(&dir).spawn().expect("the binary starts"),
            dir,
            profile_port,
        }
    }

    async fn profile(&self) -> tonic::transport::Channel {
        serving(self.profile_port).await
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Entries delivered to segmentation's consumers of profile's stream and not yet
/// acknowledged; an error while the group does not exist yet.
async fn pending(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> redis::RedisResult<i64> {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(retention_segmentation::events::CONSUMER)
        .query_async(redis)
        .await?;
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => Ok(*n),
            other => panic!("XPENDING answered {other:?}"),
        },
        other => panic!("XPENDING answered {other:?}"),
    }
}

/// A transaction holding segmentation's features table exclusively, once the
/// replica's migrations have created it.
async fn hold_features(url: &str) -> (sea_orm::DatabaseConnection, sea_orm::DatabaseTransaction) {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let started = Instant::now();
    loop {
        let txn = db.begin().await.unwrap();
        match txn
            .execute_unprepared("LOCK TABLE features IN ACCESS EXCLUSIVE MODE")
            .await
        {
            Ok(_) => return (db, txn),
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "segmentation's features table never appeared: {e}"
                );
                txn.rollback().await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_replica_killed_mid_batch_leaves_its_events_to_another_and_each_applies_once() {
    let mut dbs = Vec::new();
    for _ in SERVICES {
        dbs.push(TestDb::postgres().await.expect("a database"));
    }
    let (profile_db, segmentation_db) = (dbs[0].url.clone(), dbs[2].url.clone());
    let namespace = retention_testkit::unique_namespace();
    let stream =
        retention_events::stream_key(&namespace, retention_segmentation::events::PROFILE_STREAM);
    let mut redis = redis::Client::open(retention_testkit::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    let mut first = Replica::start(&dbs, &namespace);
    let channel = first.profile().await;
    let token = dev_token(&["profile.write"]);

    // Eight callers: a customer, then three purchases, until the replica dies.
    let acked = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for w in 0..8 {
        let (channel, token, acked) = (channel.clone(), token.clone(), acked.clone());
        callers.push(tokio::spawn(async move {
            let mut client = CustomerProfileServiceClient::new(channel);
            for i in 0.. {
                let req = with_token(load_customer(w, i), &token);
                let Ok(c) = client.create_customer(req).await else {
                    return;
                };
                for order in 0..3 {
                    let purchase = ppb::RecordPurchaseRequest {
                        purchase: Some(load_purchase(&c.get_ref().name, order, 86_400)),
                    };
                    if client
                        .record_purchase(with_token(purchase, &token))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }

    // Kill the replica while its segmentation consumer holds unacknowledged
    // deliveries: mid-batch. The consumer's transaction waits on the features
    // table, which this test holds locked, so the batch cannot finish and be
    // acknowledged between the moment it is seen pending and the kill.
    let (_held, lock) = hold_features(&segmentation_db).await;
    let started = Instant::now();
    while pending(&mut redis, &stream).await.unwrap_or(0) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "segmentation never held a delivery"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().unwrap();
    lock.rollback().await.unwrap();
    for c in callers {
        c.await.unwrap();
    }
    let orphaned = pending(&mut redis, &stream).await.expect("XPENDING");
    let acked = acked.load(Ordering::SeqCst);
    let committed = count(&profile_db, "SELECT COUNT(*) FROM purchases").await;
    assert!(
        orphaned > 0,
        "the killed replica left deliveries unacknowledged"
    );
    assert!(
        committed as u64 >= acked,
        "{committed} purchases stored, {acked} acknowledged"
    );

    // The second replica relays what the first committed but never published,
    // claims the dead consumer's deliveries once they idle past claim_idle_ms,
    // and folds every purchase once.
    let second = Replica::start(&dbs, &namespace);
    second.profile().await;
    let folded_sql = "SELECT CAST(COALESCE(SUM(CAST(CAST(data AS jsonb) ->> 'purchases' AS BIGINT)), 0) \
                      AS BIGINT) FROM features";
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut folded, mut rows) = (0, 0);
    while Instant::now() < deadline {
        folded = count(&segmentation_db, folded_sql).await;
        rows = count(&segmentation_db, "SELECT COUNT(*) FROM purchases").await;
        if folded == committed
            && rows == committed
            && pending(&mut redis, &stream).await.ok() == Some(0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Longer than a claim cycle again: nothing arrives twice late.
    tokio::time::sleep(Duration::from_millis(2 * CLAIM_IDLE_MS)).await;
    let folded_later = count(&segmentation_db, folded_sql).await;
    let left = pending(&mut redis, &stream).await.expect("XPENDING");
    let dead_letters: i64 = redis::cmd("XLEN")
        .arg(retention_events::dead_letter_key(
            &namespace,
            retention_segmentation::events::PROFILE_STREAM,
        ))
        .query_async(&mut redis)
        .await
        .unwrap();
    let unpublished = unpublished(&profile_db).await;
    println!(
        "consumer killed mid-batch: {acked} purchases acknowledged, {committed} committed, \
         {orphaned} deliveries orphaned by the kill; after the second replica: \
         {folded} folded into features ({folded_later} later), {rows} purchase rows, \
         {left} pending, {dead_letters} dead letters, {unpublished} unpublished"
    );
    assert_eq!(folded, committed, "every committed purchase folded once");
    assert_eq!(folded_later, committed, "and none again later");
    assert_eq!(rows, committed);
    assert_eq!(left, 0, "the dead consumer's deliveries were claimed");
    assert_eq!(dead_letters, 0);
    assert_eq!(unpublished, 0);
    drop(second);
    // The streams of both replicas; tests share the Redis server.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut redis)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut redis).await;
    }
}
