//! Tests against the machine's real PostgreSQL and Redis (and SQLite files).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::future::BoxFuture;
use prost::Message;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use retention_proto::profile::{CustomerErasedEvent, CustomerMergedEvent};
use retention_testkit::{Backend, TestDb};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::*;

const STREAM: &str = "retention.profile.events";
const MERGED: &str = "retention.profile.v1.CustomerMergedEvent";

// ---------------------------------------------------------------------------
// harness

/// Tracing with the OpenTelemetry layer, so spans have ids and envelopes get a
/// traceparent; output goes through the test writer.
fn init_tracing() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,retention_events=info"));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("events-test")));
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

struct TestMigrator;

impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(EventsMigration)]
    }
}

async fn setup_db(backend: Backend) -> anyhow::Result<(TestDb, DatabaseConnection)> {
    init_tracing();
    let tdb = TestDb::new(backend).await?;
    let db = retention_db::connect(&retention_db::DbOptions::new(tdb.url.clone())).await?;
    retention_db::migrate::<TestMigrator>(&db).await?;
    Ok((tdb, db))
}

async fn count(db: &impl ConnectionTrait, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// A Redis namespace for one test; its keys are deleted on drop.
struct RedisNs {
    ns: String,
    client: redis::Client,
    conn: ConnectionManager,
}

impl RedisNs {
    async fn new() -> anyhow::Result<RedisNs> {
        init_tracing();
        let client = redis::Client::open(retention_testkit::redis_url())?;
        let conn = ConnectionManager::new(client.clone()).await?;
        Ok(RedisNs {
            ns: retention_testkit::unique_namespace(),
            client,
            conn,
        })
    }

    fn key(&self) -> String {
        stream_key(&self.ns, STREAM)
    }

    fn publisher(&self) -> RedisPublisher {
        RedisPublisher::new(self.conn.clone(), self.ns.clone(), 10_000)
    }

    fn opts(&self, group: &str, consumer: &str) -> ConsumerOptions {
        ConsumerOptions {
            batch: 16,
            block: Duration::from_millis(100),
            claim_idle: Duration::from_millis(200),
            max_deliveries: 3,
            ..ConsumerOptions::new(self.ns.clone(), STREAM, group, consumer)
        }
    }

    async fn range(&self, key: &str) -> anyhow::Result<StreamRangeReply> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await?)
    }

    async fn xlen(&self, key: &str) -> anyhow::Result<u64> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("XLEN").arg(key).query_async(&mut conn).await?)
    }

    /// Entries pending (delivered, unacknowledged) in `group`.
    async fn pending(&self, group: &str) -> anyhow::Result<u64> {
        let mut conn = self.conn.clone();
        let v: redis::Value = redis::cmd("XPENDING")
            .arg(self.key())
            .arg(group)
            .query_async(&mut conn)
            .await?;
        match v {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => Ok(u64::try_from(*n)?),
                other => bail!("unexpected XPENDING reply {other:?}"),
            },
            other => bail!("unexpected XPENDING reply {other:?}"),
        }
    }
}

impl Drop for RedisNs {
    fn drop(&mut self) {
        let Ok(mut con) = self.client.get_connection() else {
            return;
        };
        let pattern = format!("{}:*", self.ns);
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query::<(u64, Vec<String>)>(&mut con)
            else {
                return;
            };
            if !keys.is_empty() {
                let _ = redis::cmd("DEL").arg(&keys).query::<()>(&mut con);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// Polls `check` until it returns true, or fails after `timeout`.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn merged(n: usize) -> OutboxEvent {
    OutboxEvent::new(
        STREAM,
        Some(&format!("c{n}")),
        &CustomerMergedEvent {
            survivor_id: format!("c{n}"),
            merged_id: format!("m{n}"),
        },
    )
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// An envelope as `enqueue` would build it, with a known trace id.
fn envelope(event_id: &str, n: usize) -> EventEnvelope {
    EventEnvelope {
        event_id: event_id.to_string(),
        event_type: MERGED.into(),
        occurred_at: None,
        customer_id: format!("c{n}"),
        traceparent: format!("00-{TRACE_ID}-00f067aa0ba902b7-01"),
        tracestate: String::new(),
        source: "test".into(),
        payload: Some(retention_proto::pack_any(&CustomerMergedEvent {
            survivor_id: format!("c{n}"),
            merged_id: format!("m{n}"),
        })),
        target_group: String::new(),
    }
}

async fn publish_envelopes(p: &dyn Publisher, envs: &[EventEnvelope]) -> anyhow::Result<()> {
    for e in envs {
        p.publish(STREAM, &e.event_id, &e.encode_to_vec()).await?;
    }
    Ok(())
}

/// Records what it saw; fails (Retry/Permanent) for chosen event ids.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
    trace_ids: Mutex<Vec<Option<String>>>,
    retry: HashSet<String>,
    reject: HashSet<String>,
}

impl Recorder {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
    fn times(&self, id: &str) -> usize {
        self.seen().iter().filter(|s| *s == id).count()
    }
}

impl EventHandler for Recorder {
    fn handle<'a>(&'a self, env: &'a EventEnvelope) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if let Ok(mut v) = self.seen.lock() {
                v.push(env.event_id.clone());
            }
            if let Ok(mut v) = self.trace_ids.lock() {
                v.push(retention_telemetry::current_trace_id());
            }
            if self.retry.contains(&env.event_id) {
                return Err(HandlerError::Retry("not yet".into()));
            }
            if self.reject.contains(&env.event_id) {
                return Err(HandlerError::Permanent("poison".into()));
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------
// pure functions

#[test]
fn keys_are_namespaced() {
    assert_eq!(stream_key("", STREAM), STREAM);
    assert_eq!(stream_key("t1", STREAM), "t1:retention.profile.events");
    assert_eq!(dead_letter_key("", STREAM), "retention.profile.events.dlq");
    assert_eq!(
        dead_letter_key("t1", STREAM),
        "t1:retention.profile.events.dlq"
    );
}

#[test]
fn payload_decodes_only_as_its_own_type() -> anyhow::Result<()> {
    let env = envelope("e1", 7);
    let m: Option<CustomerMergedEvent> = decode_payload(&env)?;
    assert_eq!(m.map(|m| m.merged_id), Some("m7".to_string()));
    let other: Option<CustomerErasedEvent> = decode_payload(&env)?;
    assert!(other.is_none());
    let empty = EventEnvelope::default();
    assert!(decode_payload::<CustomerMergedEvent>(&empty)?.is_none());
    Ok(())
}

#[test]
fn relays_claim_rows_with_skip_locked_on_postgres() {
    use sea_orm::sea_query::PostgresQueryBuilder;
    let sql = crate::relay::claim_query(25, true).to_string(PostgresQueryBuilder);
    assert!(sql.contains("ORDER BY \"seq\" ASC"), "{sql}");
    assert!(sql.ends_with("FOR UPDATE SKIP LOCKED"), "{sql}");
}

#[test]
fn handler_errors_classify_infrastructure_failures_as_transient() {
    let e: HandlerError = EventsError::Publish("down".into()).into();
    assert!(matches!(e, HandlerError::Retry(_)));
    let e: HandlerError = sea_orm::DbErr::Custom("x".into()).into();
    assert!(matches!(e, HandlerError::Retry(_)));
}

// ---------------------------------------------------------------------------
// outbox

async fn outbox_follows_the_transaction(backend: Backend) -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(backend).await?;
    // Migrations are idempotent.
    retention_db::migrate::<TestMigrator>(&db).await?;

    let txn = db.begin().await?;
    let id = enqueue(&txn, "profile", merged(1)).await?;
    txn.commit().await?;
    assert_eq!(pending_count(&db).await?, 1);
    assert!(uuid::Uuid::parse_str(&id)?.get_version_num() == 7);

    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT event_id, stream, event_type, customer_id, envelope, attempts FROM outbox_events",
        ))
        .await?
        .context("row")?;
    assert_eq!(row.try_get::<String>("", "event_id")?, id);
    assert_eq!(row.try_get::<String>("", "stream")?, STREAM);
    assert_eq!(row.try_get::<String>("", "event_type")?, MERGED);
    assert_eq!(
        row.try_get::<Option<String>>("", "customer_id")?.as_deref(),
        Some("c1")
    );
    assert_eq!(row.try_get::<i32>("", "attempts")?, 0);
    let env = EventEnvelope::decode(row.try_get::<Vec<u8>>("", "envelope")?.as_slice())?;
    assert_eq!(env.event_id, id);
    assert_eq!(env.event_type, MERGED);
    assert_eq!(env.source, "profile");
    assert_eq!(env.customer_id, "c1");
    assert!(env.occurred_at.is_some());

    let txn = db.begin().await?;
    enqueue(&txn, "profile", merged(2)).await?;
    txn.rollback().await?;
    assert_eq!(
        pending_count(&db).await?,
        1,
        "a rolled-back event must not exist"
    );

    // Bulk: more than one insert chunk.
    let txn = db.begin().await?;
    let ids = enqueue_all(&txn, "profile", (0..2500).map(merged).collect()).await?;
    txn.commit().await?;
    assert_eq!(ids.len(), 2500);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2500);
    assert_eq!(pending_count(&db).await?, 2501);
    assert!(enqueue_all(&db, "profile", vec![]).await?.is_empty());

    // Inbox.
    assert!(first_delivery(&db, "svc", &id).await?);
    assert!(!first_delivery(&db, "svc", &id).await?);
    assert!(first_delivery(&db, "other-svc", &id).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_follows_the_transaction_on_postgres() -> anyhow::Result<()> {
    outbox_follows_the_transaction(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_follows_the_transaction_on_sqlite() -> anyhow::Result<()> {
    outbox_follows_the_transaction(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_remove_only_old_rows() -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Sqlite).await?;
    enqueue(&db, "profile", merged(1)).await?;
    enqueue(&db, "profile", merged(2)).await?;
    Relay::new(
        db.clone(),
        Arc::new(InProcessBus::new()),
        RelayOptions::default(),
    )
    .flush_once()
    .await?;
    enqueue(&db, "profile", merged(3)).await?;
    first_delivery(&db, "svc", "e1").await?;
    assert_eq!(purge_published(&db, Duration::from_secs(3600)).await?, 0);
    assert_eq!(purge_processed(&db, Duration::from_secs(3600)).await?, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(purge_published(&db, Duration::ZERO).await?, 2);
    assert_eq!(purge_processed(&db, Duration::ZERO).await?, 1);
    assert_eq!(
        pending_count(&db).await?,
        1,
        "unpublished rows are never purged"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// relay

async fn relay_publishes_to_redis(backend: Backend) -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(backend).await?;
    let redis = RedisNs::new().await?;

    let span = tracing::info_span!("test.request");
    let expected_trace = span
        .in_scope(retention_telemetry::current_trace_id)
        .context("the test span is traced")?;
    let id = async {
        let txn = db.begin().await?;
        let id = enqueue(&txn, "profile", merged(1)).await?;
        txn.commit().await?;
        anyhow::Ok(id)
    }
    .instrument(span)
    .await?;

    let relay = Relay::new(
        db.clone(),
        Arc::new(redis.publisher()),
        RelayOptions::default(),
    );
    assert_eq!(relay.flush_once().await?, 1);
    assert_eq!(pending_count(&db).await?, 0);

    let entries = redis.range(&redis.key()).await?.ids;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let field = |name: &str| -> anyhow::Result<Vec<u8>> {
        match entry.map.get(name) {
            Some(redis::Value::BulkString(b)) => Ok(b.clone()),
            other => bail!("field {name}: {other:?}"),
        }
    };
    assert_eq!(field("id")?, id.as_bytes());
    assert_eq!(field("type")?, MERGED.as_bytes());
    let env = EventEnvelope::decode(field("envelope")?.as_slice())?;
    assert_eq!(env.event_id, id);
    assert_eq!(
        env.payload.as_ref().map(|p| p.type_url.as_str()),
        Some("type.googleapis.com/retention.profile.v1.CustomerMergedEvent")
    );
    assert!(
        env.traceparent.contains(&expected_trace),
        "traceparent {:?} should carry trace {expected_trace}",
        env.traceparent
    );

    // Nothing is republished.
    assert_eq!(relay.flush_once().await?, 0);
    assert_eq!(redis.xlen(&redis.key()).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_to_redis_on_postgres() -> anyhow::Result<()> {
    relay_publishes_to_redis(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_to_redis_on_sqlite() -> anyhow::Result<()> {
    relay_publishes_to_redis(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stay_pending_while_redis_is_unreachable() -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Postgres).await?;
    enqueue(&db, "profile", merged(1)).await?;
    // Nothing listens on port 1: connection refused.
    let dead = RedisPublisher::from_url("redis://127.0.0.1:1", "unused", 100)?;
    let relay = Relay::new(db.clone(), Arc::new(dead), RelayOptions::default());
    assert!(relay.flush_once().await.is_err());
    assert!(relay.flush_once().await.is_err());
    assert_eq!(pending_count(&db).await?, 1);
    assert_eq!(
        count(&db, "SELECT CAST(attempts AS BIGINT) FROM outbox_events").await?,
        2
    );
    Ok(())
}

/// Fails while `down` is set, then delegates.
struct Flaky<P> {
    inner: P,
    down: AtomicBool,
    failures: AtomicUsize,
}

impl<P: Publisher> Publisher for Flaky<P> {
    fn publish<'a>(
        &'a self,
        stream: &'a str,
        event_id: &'a str,
        envelope: &'a [u8],
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        if self.down.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Box::pin(futures::future::ready(Err(EventsError::Publish(
                "bus down".into(),
            ))));
        }
        self.inner.publish(stream, event_id, envelope)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_delivers_after_the_publisher_recovers() -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Postgres).await?;
    let redis = RedisNs::new().await?;
    let flaky = Arc::new(Flaky {
        inner: redis.publisher(),
        down: AtomicBool::new(true),
        failures: AtomicUsize::new(0),
    });
    let relay = Relay::new(
        db.clone(),
        flaky.clone(),
        RelayOptions {
            interval: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RelayOptions::default()
        },
    );
    let notify = relay.notifier();
    let shutdown = CancellationToken::new();
    let task = relay.spawn(shutdown.clone());

    enqueue(&db, "profile", merged(1)).await?;
    enqueue(&db, "profile", merged(2)).await?;
    notify.notify_one();
    eventually(Duration::from_secs(5), "publish attempts", || async {
        Ok(flaky.failures.load(Ordering::SeqCst) >= 3)
    })
    .await?;
    assert_eq!(pending_count(&db).await?, 2);
    assert_eq!(redis.xlen(&redis.key()).await?, 0);

    flaky.down.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(5), "rows published", || async {
        Ok(pending_count(&db).await? == 0)
    })
    .await?;
    assert_eq!(redis.xlen(&redis.key()).await?, 2);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_flushes_pending_rows_on_shutdown() -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Sqlite).await?;
    let bus = InProcessBus::new();
    let relay = Relay::new(
        db.clone(),
        Arc::new(bus.clone()),
        RelayOptions {
            // Never polls on its own within the test.
            interval: Duration::from_secs(3600),
            ..RelayOptions::default()
        },
    );
    let shutdown = CancellationToken::new();
    let task = relay.spawn(shutdown.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    enqueue(&db, "profile", merged(1)).await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await??;
    assert_eq!(pending_count(&db).await?, 0);
    assert_eq!(bus.len(STREAM), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_publish_each_row_exactly_once() -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Postgres).await?;
    let redis = RedisNs::new().await?;
    const N: usize = 600;
    enqueue_all(&db, "profile", (0..N).map(merged).collect()).await?;

    let shutdown = CancellationToken::new();
    let opts = RelayOptions {
        batch_size: 25,
        interval: Duration::from_millis(5),
        ..RelayOptions::default()
    };
    let a = Relay::new(db.clone(), Arc::new(redis.publisher()), opts.clone());
    let b = Relay::new(db.clone(), Arc::new(redis.publisher()), opts);
    // Race them directly too, not only through their loops.
    let (ra, rb) = tokio::join!(a.flush_once(), b.flush_once());
    assert_eq!(ra? + rb?, 50);
    let ta = a.spawn(shutdown.clone());
    let tb = b.spawn(shutdown.clone());
    eventually(Duration::from_secs(20), "all rows published", || async {
        Ok(pending_count(&db).await? == 0)
    })
    .await?;
    shutdown.cancel();
    ta.await?;
    tb.await?;

    let entries = redis.range(&redis.key()).await?.ids;
    assert_eq!(entries.len(), N, "stream entries == rows");
    let ids: HashSet<_> = entries
        .iter()
        .filter_map(|e| match e.map.get("id") {
            Some(redis::Value::BulkString(b)) => Some(b.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), N, "no event was published twice");
    Ok(())
}

// ---------------------------------------------------------------------------
// consumers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_handles_and_acknowledges_every_event() -> anyhow::Result<()> {
    let redis = RedisNs::new().await?;
    let bus = EventBus::redis(&retention_testkit::redis_url(), &redis.ns, 1000, Vec::new())?;
    // Published before the group exists: a new group starts at the stream's start.
    let envs: Vec<_> = (0..5).map(|n| envelope(&format!("e{n}"), n)).collect();
    publish_envelopes(bus.publisher().as_ref(), &envs).await?;

    let rec = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let task = bus.spawn_consumer(
        redis.opts("scoring", "scoring-1"),
        rec.clone(),
        shutdown.clone(),
    );
    eventually(Duration::from_secs(5), "5 events handled", || async {
        Ok(rec.seen().len() >= 5)
    })
    .await?;
    // And one published while it runs.
    publish_envelopes(bus.publisher().as_ref(), &[envelope("e5", 5)]).await?;
    eventually(Duration::from_secs(5), "6 events handled", || async {
        Ok(rec.seen().len() >= 6)
    })
    .await?;
    eventually(Duration::from_secs(5), "PEL empty", || async {
        Ok(redis.pending("scoring").await? == 0)
    })
    .await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;

    let seen = rec.seen();
    assert_eq!(seen, (0..6).map(|n| format!("e{n}")).collect::<Vec<_>>());
    // The handler ran in the producer's trace.
    let traces = rec.trace_ids.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(
        traces.iter().all(|t| t.as_deref() == Some(TRACE_ID)),
        "{traces:?}"
    );
    Ok(())
}

/// Sleeps in its handler and records, per customer, the order it saw events
/// in and how many ran at once.
#[derive(Default)]
struct Slow {
    order: Mutex<HashMap<String, Vec<String>>>,
    in_flight: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl EventHandler for Slow {
    fn handle<'a>(&'a self, env: &'a EventEnvelope) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(mut m) = self.order.lock() {
                m.entry(env.customer_id.clone())
                    .or_default()
                    .push(env.event_id.clone());
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_handled_concurrently_and_each_one_in_order() -> anyhow::Result<()> {
    let redis = RedisNs::new().await?;
    // 24 events, interleaved over 4 customers, published before the consumer starts
    // so that one read returns 16 of them.
    let envs: Vec<_> = (0..24)
        .map(|k| envelope(&format!("e{k:02}"), k % 4))
        .collect();
    publish_envelopes(&redis.publisher(), &envs).await?;

    let slow = Arc::new(Slow::default());
    let opts = ConsumerOptions {
        concurrency: 3,
        ..redis.opts("g", "c1")
    };
    let shutdown = CancellationToken::new();
    let task = RedisConsumer::new(redis.client.clone(), opts, slow.clone()).spawn(shutdown.clone());
    eventually(Duration::from_secs(10), "PEL empty", || async {
        let handled: usize = slow
            .order
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0);
        Ok(handled == 24 && redis.pending("g").await? == 0)
    })
    .await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;

    let order = slow.order.lock().map(|m| m.clone()).unwrap_or_default();
    assert_eq!(order.len(), 4);
    for (customer, seen) in &order {
        let published: Vec<_> = envs
            .iter()
            .filter(|e| &e.customer_id == customer)
            .map(|e| e.event_id.clone())
            .collect();
        assert_eq!(seen, &published, "{customer}");
    }
    let most = slow.most_at_once.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} handlers at once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_a_dead_consumer_are_claimed() -> anyhow::Result<()> {
    let redis = RedisNs::new().await?;
    let mut conn = redis.conn.clone();
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(redis.key())
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(&mut conn)
        .await?;
    let envs: Vec<_> = (0..3).map(|n| envelope(&format!("d{n}"), n)).collect();
    publish_envelopes(&redis.publisher(), &envs).await?;
    // Consumer A reads them and dies without acknowledging.
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("A")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(redis.key())
        .arg(">")
        .query_async(&mut conn)
        .await?;
    assert_eq!(read.keys.first().map(|k| k.ids.len()), Some(3));
    assert_eq!(redis.pending("g").await?, 3);

    let rec = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let consumer = RedisConsumer::new(redis.client.clone(), redis.opts("g", "B"), rec.clone());
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(
        Duration::from_secs(5),
        "claimed entries handled",
        || async { Ok(rec.seen().len() >= 3) },
    )
    .await?;
    eventually(Duration::from_secs(5), "PEL empty", || async {
        Ok(redis.pending("g").await? == 0)
    })
    .await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await???;
    let mut seen = rec.seen();
    seen.sort();
    assert_eq!(seen, vec!["d0", "d1", "d2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_go_to_the_dead_letter_stream() -> anyhow::Result<()> {
    let redis = RedisNs::new().await?;
    let envs = vec![
        envelope("flaky", 0),
        envelope("poison", 1),
        envelope("fine", 2),
    ];
    let mut raw = redis::cmd("XADD");
    raw.arg(redis.key()).arg("*").arg("garbage").arg("1");
    publish_envelopes(&redis.publisher(), &envs).await?;
    let mut conn = redis.conn.clone();
    raw.query_async::<String>(&mut conn).await?;

    let rec = Arc::new(Recorder {
        retry: HashSet::from(["flaky".to_string()]),
        reject: HashSet::from(["poison".to_string()]),
        ..Recorder::default()
    });
    let opts = ConsumerOptions {
        claim_idle: Duration::from_millis(100),
        max_deliveries: 3,
        ..redis.opts("g", "c1")
    };
    let shutdown = CancellationToken::new();
    let task = RedisConsumer::new(redis.client.clone(), opts, rec.clone()).spawn(shutdown.clone());
    let dlq = dead_letter_key(&redis.ns, STREAM);
    eventually(Duration::from_secs(10), "3 dead letters", || async {
        Ok(redis.xlen(&dlq).await? >= 3)
    })
    .await?;
    eventually(Duration::from_secs(5), "PEL empty", || async {
        Ok(redis.pending("g").await? == 0)
    })
    .await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;

    assert_eq!(rec.times("flaky"), 3, "retried up to max_deliveries");
    assert_eq!(rec.times("poison"), 1, "permanent errors are not retried");
    assert_eq!(rec.times("fine"), 1);

    let dead = redis.range(&dlq).await?.ids;
    assert_eq!(dead.len(), 3);
    let text = |e: &redis::streams::StreamId, f: &str| match e.map.get(f) {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let by_id: Vec<(String, String)> = dead
        .iter()
        .map(|e| (text(e, "id"), text(e, "reason")))
        .collect();
    assert!(
        by_id.iter().any(|(id, r)| id == "poison" && r == "poison"),
        "{by_id:?}"
    );
    assert!(
        by_id
            .iter()
            .any(|(id, r)| id == "flaky" && r.contains("max_deliveries")),
        "{by_id:?}"
    );
    assert!(
        by_id.iter().any(|(_, r)| r.contains("no envelope")),
        "{by_id:?}"
    );
    // The original envelope is kept, so the message can be replayed.
    let poison = dead
        .iter()
        .find(|e| text(e, "id") == "poison")
        .context("poison")?;
    let env = match poison.map.get("envelope") {
        Some(redis::Value::BulkString(b)) => EventEnvelope::decode(b.as_slice())?,
        other => bail!("envelope field: {other:?}"),
    };
    assert_eq!(env.event_id, "poison");
    assert_eq!(text(poison, "group"), "g");
    Ok(())
}

/// Applies the effect once per event: the inbox row commits with the effect.
struct EffectHandler {
    db: DatabaseConnection,
    calls: AtomicUsize,
}

impl EventHandler for EffectHandler {
    fn handle<'a>(&'a self, env: &'a EventEnvelope) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let txn = self.db.begin().await?;
            if first_delivery(&txn, "effects", &env.event_id).await? {
                txn.execute_raw(Statement::from_sql_and_values(
                    txn.get_database_backend(),
                    "INSERT INTO effects (event_id) VALUES ($1)",
                    [env.event_id.clone().into()],
                ))
                .await?;
            }
            txn.commit().await?;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_apply_their_effect_once() -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Postgres).await?;
    db.execute_unprepared("CREATE TABLE effects (event_id TEXT NOT NULL)")
        .await?;
    let redis = RedisNs::new().await?;
    // The same event published twice (e.g. the relay crashed before marking it).
    let env = envelope("once", 1);
    publish_envelopes(
        &redis.publisher(),
        &[env.clone(), env.clone(), envelope("twice", 2)],
    )
    .await?;

    let handler = Arc::new(EffectHandler {
        db: db.clone(),
        calls: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let task = RedisConsumer::new(redis.client.clone(), redis.opts("g", "c1"), handler.clone())
        .spawn(shutdown.clone());
    eventually(Duration::from_secs(5), "3 deliveries", || async {
        Ok(handler.calls.load(Ordering::SeqCst) >= 3)
    })
    .await?;
    eventually(Duration::from_secs(5), "PEL empty", || async {
        Ok(redis.pending("g").await? == 0)
    })
    .await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;

    assert_eq!(count(&db, "SELECT COUNT(*) FROM effects").await?, 2);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM effects WHERE event_id = 'once'").await?,
        1
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM processed_events").await?,
        2
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_survives_an_unreachable_redis_and_stops_on_shutdown() -> anyhow::Result<()> {
    init_tracing();
    let rec = Arc::new(Recorder::default());
    let opts = ConsumerOptions::new("unused", STREAM, "g", "c1");
    let consumer = RedisConsumer::from_url("redis://127.0.0.1:1", opts, rec)?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!task.is_finished(), "keeps retrying while Redis is down");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await???;
    Ok(())
}

// ---------------------------------------------------------------------------
// in-process bus

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_process_bus_end_to_end() -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Sqlite).await?;
    let bus = EventBus::in_process();
    let EventBus::InProcess(inner) = &bus else {
        bail!("in-process bus expected");
    };
    let relay = Relay::new(
        db.clone(),
        bus.publisher(),
        RelayOptions {
            interval: Duration::from_secs(3600),
            ..RelayOptions::default()
        },
    );
    let notify = relay.notifier();
    let shutdown = CancellationToken::new();
    let relay_task = relay.spawn(shutdown.clone());

    // Group "scoring" has two consumers sharing the work; "campaigns" sees all too.
    let s1 = Arc::new(Recorder::default());
    let s2 = Arc::new(Recorder::default());
    let c1 = Arc::new(Recorder::default());
    let opts = |g: &str, c: &str| ConsumerOptions::new("", STREAM, g, c);
    let tasks = vec![
        bus.spawn_consumer(opts("scoring", "s1"), s1.clone(), shutdown.clone()),
        bus.spawn_consumer(opts("scoring", "s2"), s2.clone(), shutdown.clone()),
        run_in_process(inner, opts("campaigns", "c1"), c1.clone(), shutdown.clone()),
    ];

    let span = tracing::info_span!("test.request");
    let trace = span.in_scope(retention_telemetry::current_trace_id);
    let ids = async {
        let txn = db.begin().await?;
        let ids = enqueue_all(&txn, "profile", (0..20).map(merged).collect()).await?;
        txn.commit().await?;
        anyhow::Ok(ids)
    }
    .instrument(span)
    .await?;
    notify.notify_one();

    eventually(
        Duration::from_secs(5),
        "both groups saw every event",
        || async { Ok(s1.seen().len() + s2.seen().len() >= 20 && c1.seen().len() >= 20) },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut scoring: Vec<_> = s1.seen().into_iter().chain(s2.seen()).collect();
    scoring.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(scoring, expected, "each event once per group");
    assert_eq!(c1.seen(), ids, "one consumer sees the outbox order");
    assert_eq!(pending_count(&db).await?, 0);
    let traces = c1.trace_ids.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(
        trace.is_some() && traces.iter().all(|t| *t == trace),
        "{traces:?}"
    );

    shutdown.cancel();
    relay_task.await?;
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(5), t).await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_bus_retries_then_dead_letters() -> anyhow::Result<()> {
    init_tracing();
    let bus = InProcessBus::new();
    let rec = Arc::new(Recorder {
        retry: HashSet::from(["flaky".to_string()]),
        reject: HashSet::from(["poison".to_string()]),
        ..Recorder::default()
    });
    let shutdown = CancellationToken::new();
    let opts = ConsumerOptions {
        claim_idle: Duration::from_millis(100),
        max_deliveries: 4,
        ..ConsumerOptions::new("", STREAM, "g", "c1")
    };
    let task = run_in_process(&bus, opts, rec.clone(), shutdown.clone());
    publish_envelopes(
        &bus,
        &[
            envelope("flaky", 0),
            envelope("poison", 1),
            envelope("fine", 2),
        ],
    )
    .await?;
    bus.publish(STREAM, "garbage", b"\xff\xff\xff").await?;
    eventually(Duration::from_secs(5), "3 dead letters", || async {
        Ok(bus.dead_letters().len() >= 3)
    })
    .await?;
    eventually(Duration::from_secs(5), "fine handled", || async {
        Ok(rec.times("fine") == 1)
    })
    .await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;

    assert_eq!(rec.times("flaky"), 4);
    assert_eq!(rec.times("poison"), 1);
    // Buried as each is given up on: the undecodable one at once, the flaky
    // one after its retries.
    let mut dead = bus.dead_letters();
    dead.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let ids: Vec<_> = dead.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(ids, vec!["flaky", "garbage", "poison"]);
    assert_eq!(dead[0].deliveries, 4);
    assert_eq!(dead[2].reason, "poison");
    assert_eq!(
        EventEnvelope::decode(dead[2].envelope.as_slice())?.event_id,
        "poison"
    );
    Ok(())
}

#[tokio::test]
async fn in_process_bus_trims_to_max_len() -> anyhow::Result<()> {
    let bus = InProcessBus::with_max_len(3);
    for n in 0..5 {
        let e = envelope(&format!("t{n}"), n);
        bus.publish(STREAM, &e.event_id, &e.encode_to_vec()).await?;
    }
    assert_eq!(bus.len(STREAM), 3);
    assert!(bus.is_empty("other"));
    // A group joining now starts at the oldest retained entry.
    let rec = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let task = run_in_process(
        &bus,
        ConsumerOptions::new("", STREAM, "late", "c"),
        rec.clone(),
        shutdown.clone(),
    );
    eventually(
        Duration::from_secs(5),
        "retained entries handled",
        || async { Ok(rec.seen().len() >= 3) },
    )
    .await?;
    shutdown.cancel();
    task.await?;
    assert_eq!(rec.seen(), vec!["t2", "t3", "t4"]);
    Ok(())
}

mod backpressure;
mod dead_letters;

/// Records each `handle_batch` call; a batch holding customer "c0" waits until
/// a batch of another customer was applied (it would wait forever if the lanes
/// ran one after the other).
#[derive(Default)]
struct Lanes {
    calls: std::sync::Mutex<Vec<Vec<String>>>,
    other_applied: tokio::sync::Notify,
}

impl EventHandler for Lanes {
    fn handle<'a>(&'a self, _env: &'a EventEnvelope) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async { Ok(()) })
    }

    fn handle_batch<'a>(
        &'a self,
        envelopes: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Vec<Result<(), HandlerError>>> {
        Box::pin(async move {
            let customers: Vec<String> = envelopes.iter().map(|e| e.customer_id.clone()).collect();
            self.calls.lock().unwrap().push(customers.clone());
            if customers.iter().any(|c| c == "c0") {
                self.other_applied.notified().await;
            } else {
                self.other_applied.notify_one();
            }
            envelopes.iter().map(|_| Ok(())).collect()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_bus_applies_batches_per_customer_lane_at_once() -> anyhow::Result<()> {
    let bus = InProcessBus::new();
    let lanes = Arc::new(Lanes::default());
    let shutdown = CancellationToken::new();
    let opts = ConsumerOptions {
        concurrency: 4,
        batch: 64,
        ..ConsumerOptions::new("", STREAM, "g", "c1")
    };
    // Published before the consumer starts, so its first take holds them all.
    bus.join(STREAM, "g");
    let events: Vec<EventEnvelope> = (0..40)
        .map(|i| envelope(&format!("e{i:02}"), i % 8))
        .collect();
    publish_envelopes(&bus, &events).await?;
    let task = run_in_process(&bus, opts, lanes.clone(), shutdown.clone());
    eventually(Duration::from_secs(5), "every event applied", || async {
        Ok(bus.lags(STREAM).iter().all(|l| l.lag == 0))
    })
    .await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await??;

    let calls = lanes.calls.lock().unwrap().clone();
    assert!(calls.len() > 1, "more than one lane: {calls:?}");
    assert_eq!(
        calls.iter().map(Vec::len).sum::<usize>(),
        40,
        "each event once"
    );
    for call in &calls {
        let lane = crate::consumer::batch_of(&call[0], 4);
        assert!(
            call.iter().all(|c| crate::consumer::batch_of(c, 4) == lane),
            "one lane per call: {call:?}"
        );
    }
    let c0 = calls.iter().flatten().filter(|c| *c == "c0").count();
    assert_eq!(c0, 5, "the waiting lane's events applied once each");
    Ok(())
}
