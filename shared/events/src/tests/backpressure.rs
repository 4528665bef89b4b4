//! Backpressure: a slow or stopped group holds the relay back, nothing is lost;
//! backfills reach their group alone; a group taken out of the declaration
//! holds nothing back.

use super::*;

/// Entries a paused group may fall behind before the relay holds back.
const CAP: usize = 100;

/// Every event id of `rec` seen exactly once, and all `n` of them.
fn exactly_once(rec: &Recorder, n: usize) -> anyhow::Result<()> {
    let seen = rec.seen();
    let distinct: HashSet<&String> = seen.iter().collect();
    anyhow::ensure!(
        seen.len() == n && distinct.len() == n,
        "{} deliveries of {} distinct events, expected {n} of each",
        seen.len(),
        distinct.len()
    );
    Ok(())
}

/// Counts log events whose message starts with one of the given texts (installed
/// as the test process's global subscriber; nextest runs each test alone).
#[derive(Clone, Default)]
struct LogCount(Arc<Mutex<HashMap<&'static str, usize>>>, Vec<&'static str>);

impl LogCount {
    fn install(messages: &[&'static str]) -> LogCount {
        use tracing_subscriber::layer::SubscriberExt;
        let counts = LogCount(Arc::default(), messages.to_vec());
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(counts.clone()),
        );
        counts
    }

    fn get(&self, message: &str) -> usize {
        self.0
            .lock()
            .map_or(0, |m| m.get(message).copied().unwrap_or(0))
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogCount {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        if let Some(known) = self.1.iter().find(|k| m.0.starts_with(*k))
            && let Ok(mut counts) = self.0.lock()
        {
            *counts.entry(known).or_default() += 1;
        }
    }
}

const HELD: &str = "outbox relay held back";
const RESUMED: &str = "outbox relay resumed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_bus_holds_the_relay_for_a_paused_group_and_loses_nothing() -> anyhow::Result<()>
{
    let logs = LogCount::install(&[HELD, RESUMED]);
    let (_tdb, db) = setup_db(Backend::Sqlite).await?;
    let bus = InProcessBus::with_max_len(CAP);
    bus.declare(STREAM, &["live".to_string(), "paused".to_string()]);
    let shutdown = CancellationToken::new();
    let live = Arc::new(Recorder::default());
    let live_task = run_in_process(
        &bus,
        ConsumerOptions::new("", STREAM, "live", "l1"),
        live.clone(),
        shutdown.clone(),
    );
    const N: usize = 10 * CAP;
    enqueue_all(&db, "profile", (0..N).map(merged).collect()).await?;
    let relay = Relay::new(
        db.clone(),
        Arc::new(bus.publisher()),
        RelayOptions {
            batch_size: 30,
            interval: Duration::from_millis(5),
            ..RelayOptions::default()
        },
    );
    let relay_task = relay.spawn(shutdown.clone());

    // The paused group (declared, no consumer yet) fills the bus to its bound;
    // the rest waits in the outbox, unpublished.
    eventually(Duration::from_secs(10), "the bus full", || async {
        Ok(bus.unapplied(STREAM) == CAP && live.seen().len() == CAP)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bus.len(STREAM), CAP, "never more than the bound on the bus");
    assert_eq!(bus.unapplied(STREAM), CAP);
    assert_eq!(
        live.seen().len(),
        CAP,
        "the live group too waits for the paused one"
    );
    assert_eq!(
        pending_count(&db).await?,
        N as u64,
        "no row is marked published before every group applied it"
    );
    let lags = bus.lags(STREAM);
    assert_eq!(
        lags,
        vec![
            GroupLag {
                group: "live".into(),
                lag: 0,
                pending: 0
            },
            GroupLag {
                group: "paused".into(),
                lag: CAP as u64,
                pending: 0
            }
        ]
    );

    let paused = Arc::new(Recorder::default());
    let paused_task = run_in_process(
        &bus,
        ConsumerOptions::new("", STREAM, "paused", "p1"),
        paused.clone(),
        shutdown.clone(),
    );
    eventually(
        Duration::from_secs(30),
        "every event applied by both",
        || async {
            Ok(
                live.seen().len() >= N
                    && paused.seen().len() >= N
                    && pending_count(&db).await? == 0,
            )
        },
    )
    .await?;
    exactly_once(&live, N)?;
    exactly_once(&paused, N)?;
    assert_eq!(
        paused.seen(),
        (0..N)
            .map(|_| String::new())
            .zip(live.seen())
            .map(|(_, id)| id)
            .collect::<Vec<_>>(),
        "both groups saw the events in outbox order"
    );
    assert_eq!(bus.trimmed_unapplied(), 0);
    assert!(bus.dead_letters().is_empty());
    assert_eq!(
        (logs.get(HELD), logs.get(RESUMED)),
        (1, 1),
        "one warning when held back and one line on resuming, not one per batch"
    );
    assert_eq!(bus.unapplied(STREAM), 0);
    assert!(bus.lags(STREAM).iter().all(|l| l.lag == 0));
    assert_eq!(
        bus.len(STREAM),
        CAP,
        "applied entries beyond the bound leave the bus"
    );
    shutdown.cancel();
    for t in [live_task, paused_task, relay_task] {
        tokio::time::timeout(Duration::from_secs(10), t).await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_rows_go_out_again_after_a_crash_before_every_group_applied_them()
-> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Sqlite).await?;
    const N: usize = 50;
    enqueue_all(&db, "profile", (0..N).map(merged).collect()).await?;
    // First life: one group applies everything, the other nothing; then the
    // process dies with the bus.
    let first = Arc::new(Recorder::default());
    {
        let bus = InProcessBus::with_max_len(CAP);
        bus.declare(STREAM, &["a".to_string(), "b".to_string()]);
        let stop = CancellationToken::new();
        let a = run_in_process(
            &bus,
            ConsumerOptions::new("", STREAM, "a", "a1"),
            first.clone(),
            stop.clone(),
        );
        let relay = Relay::new(
            db.clone(),
            Arc::new(bus.publisher()),
            RelayOptions::default(),
        );
        assert_eq!(relay.flush_once().await?, N);
        eventually(Duration::from_secs(5), "a applied all", || async {
            Ok(first.seen().len() == N)
        })
        .await?;
        relay.flush_once().await?;
        assert_eq!(pending_count(&db).await?, N as u64, "b has applied none");
        stop.cancel();
        a.await?;
    }
    // Second life: a fresh bus; the rows go out again and b gets every event.
    let bus = InProcessBus::with_max_len(CAP);
    bus.declare(STREAM, &["a".to_string(), "b".to_string()]);
    let stop = CancellationToken::new();
    let again = Arc::new(Recorder::default());
    let b = Arc::new(Recorder::default());
    let ta = run_in_process(
        &bus,
        ConsumerOptions::new("", STREAM, "a", "a2"),
        again.clone(),
        stop.clone(),
    );
    let tb = run_in_process(
        &bus,
        ConsumerOptions::new("", STREAM, "b", "b2"),
        b.clone(),
        stop.clone(),
    );
    let relay = Relay::new(
        db.clone(),
        Arc::new(bus.publisher()),
        RelayOptions::default(),
    );
    relay.flush_once().await?;
    eventually(Duration::from_secs(5), "every row settled", || async {
        relay.flush_once().await?;
        Ok(pending_count(&db).await? == 0)
    })
    .await?;
    exactly_once(&b, N)?;
    // `a` sees them again; its inbox (first_delivery) makes that a no-op.
    exactly_once(&again, N)?;
    stop.cancel();
    ta.await?;
    tb.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_events_go_to_their_group_alone() -> anyhow::Result<()> {
    let bus = InProcessBus::new();
    let stop = CancellationToken::new();
    let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let ta = run_in_process(
        &bus,
        ConsumerOptions::new("", STREAM, "a", "a1"),
        a.clone(),
        stop.clone(),
    );
    let tb = run_in_process(
        &bus,
        ConsumerOptions::new("", STREAM, "b", "b1"),
        b.clone(),
        stop.clone(),
    );
    let live = envelope("live", 1);
    let replay = EventEnvelope {
        target_group: "b".into(),
        ..envelope("replay", 2)
    };
    publish_envelopes(&bus, &[replay, live]).await?;
    eventually(Duration::from_secs(5), "both handled", || async {
        Ok(a.seen().len() == 1 && b.seen().len() == 2)
    })
    .await?;
    assert_eq!(a.seen(), vec!["live"]);
    assert_eq!(b.seen(), vec!["replay", "live"]);
    // The same on Redis: the other group acknowledges the replay unapplied.
    let redis = RedisNs::new().await?;
    let p = redis.publisher();
    publish_envelopes(
        &p,
        &[
            EventEnvelope {
                target_group: "b".into(),
                ..envelope("r-replay", 3)
            },
            envelope("r-live", 4),
        ],
    )
    .await?;
    let ra = Arc::new(Recorder::default());
    let consumer = RedisConsumer::new(redis.client.clone(), redis.opts("a", "a1"), ra.clone())
        .spawn(stop.clone());
    eventually(Duration::from_secs(5), "redis live handled", || async {
        Ok(ra.seen().len() == 1)
    })
    .await?;
    eventually(
        Duration::from_secs(5),
        "the replay acknowledged",
        || async { Ok(redis.pending("a").await? == 0) },
    )
    .await?;
    assert_eq!(ra.seen(), vec!["r-live"]);
    stop.cancel();
    ta.await?;
    tb.await?;
    consumer.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_relay_holds_back_for_a_stopped_group_and_trims_only_what_all_acknowledged()
-> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Sqlite).await?;
    let redis = RedisNs::new().await?;
    let groups = vec![(
        STREAM.to_string(),
        vec!["live".to_string(), "late".to_string()],
    )];
    let publisher =
        RedisPublisher::new(redis.conn.clone(), redis.ns.clone(), CAP).with_groups(groups);
    const N: usize = 10 * CAP;
    enqueue_all(&db, "profile", (0..N).map(merged).collect()).await?;
    let stop = CancellationToken::new();
    let live = Arc::new(Recorder::default());
    let live_task =
        RedisConsumer::new(redis.client.clone(), redis.opts("live", "l1"), live.clone())
            .spawn(stop.clone());
    let relay = Relay::new(
        db.clone(),
        Arc::new(publisher),
        RelayOptions {
            batch_size: 30,
            interval: Duration::from_millis(5),
            ..RelayOptions::default()
        },
    );
    let relay_task = relay.spawn(stop.clone());
    eventually(Duration::from_secs(10), "the relay held back", || async {
        Ok(live.seen().len() >= CAP - 30 && pending_count(&db).await? > 0)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = N as u64 - pending_count(&db).await?;
    assert!(
        published <= CAP as u64,
        "published {published}, more than the bound {CAP}, while `late` never read"
    );
    assert_eq!(
        redis.xlen(&redis.key()).await?,
        published,
        "nothing `late` has not read was trimmed"
    );
    // `late` was created by the producer before it ever read.
    let mut conn = redis.conn.clone();
    let info: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(redis.key())
        .query_async(&mut conn)
        .await?;
    assert!(
        info.groups
            .iter()
            .any(|g| g.name == "late" && g.consumers == 0)
    );

    let late = Arc::new(Recorder::default());
    let late_task =
        RedisConsumer::new(redis.client.clone(), redis.opts("late", "t1"), late.clone())
            .spawn(stop.clone());
    eventually(
        Duration::from_secs(60),
        "every event read by both",
        || async {
            Ok(live.seen().len() >= N && late.seen().len() >= N && pending_count(&db).await? == 0)
        },
    )
    .await?;
    exactly_once(&live, N)?;
    exactly_once(&late, N)?;
    assert!(redis.xlen(&redis.key()).await? <= CAP as u64);
    stop.cancel();
    for t in [live_task, late_task, relay_task] {
        tokio::time::timeout(Duration::from_secs(10), t).await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_taken_out_of_the_declaration_holds_nothing_back() -> anyhow::Result<()> {
    let (_tdb, db) = setup_db(Backend::Sqlite).await?;
    let redis = RedisNs::new().await?;
    let declared = |groups: &[&str]| {
        RedisPublisher::new(redis.conn.clone(), redis.ns.clone(), CAP).with_groups(vec![(
            STREAM.to_string(),
            groups.iter().map(|g| g.to_string()).collect(),
        )])
    };
    const N: usize = 3 * CAP;
    enqueue_all(&db, "profile", (0..N).map(merged).collect()).await?;
    let stop = CancellationToken::new();
    let live = Arc::new(Recorder::default());
    let live_task =
        RedisConsumer::new(redis.client.clone(), redis.opts("live", "l1"), live.clone())
            .spawn(stop.clone());
    // `gone` never reads: while declared, it holds the relay at the bound.
    let relay = Relay::new(
        db.clone(),
        Arc::new(declared(&["live", "gone"])),
        RelayOptions::default(),
    );
    eventually(Duration::from_secs(10), "held at the bound", || async {
        relay.flush_once().await?;
        Ok(live.seen().len() == CAP)
    })
    .await?;
    assert_eq!(
        relay.flush_once().await?,
        0,
        "nothing more while `gone` is declared"
    );
    // Declared no more (a restart with the new list): everything goes out, and
    // the stream is trimmed past what `gone` never read.
    let relay = Relay::new(
        db.clone(),
        Arc::new(declared(&["live"])),
        RelayOptions::default(),
    );
    eventually(Duration::from_secs(20), "every event to `live`", || async {
        relay.flush_once().await?;
        Ok(live.seen().len() >= N && pending_count(&db).await? == 0)
    })
    .await?;
    exactly_once(&live, N)?;
    assert!(redis.xlen(&redis.key()).await? <= CAP as u64);
    stop.cancel();
    live_task.await?;
    Ok(())
}
